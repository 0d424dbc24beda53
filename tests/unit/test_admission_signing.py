"""Signature verdicts (pure): trust policy entries, cosign simple signing, Sigstore bundles."""

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from hardened_spawner.admission import evidence as evidence_files, signing
from hardened_spawner.admission.evidence import Evidence, registry_digests
from hardened_spawner.admission.policy import Policy
from hardened_spawner.admission.registry import Material, SimpleSignature
from hardened_spawner.admission.rules import RULES

NAME = "registry.example.org/jupyter/scipy"
DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
IMAGE_ID = "sha256:" + "c" * 64
RULE = signing.TrustRule(("registry.example.org/jupyter/*",), keys=("/keys/ci.pub",))


def payload(digest=DIGEST, reference=NAME + ":1", kind=signing.COSIGN_TYPE):
    return json.dumps({"critical": {"identity": {"docker-reference": reference},
                                    "image": {"docker-manifest-digest": digest}, "type": kind},
                       "optional": None}).encode()


def sign(key, data):
    if isinstance(key, ec.EllipticCurvePrivateKey):
        raw = key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raw = key.sign(data)
    return base64.b64encode(raw).decode()


KEY = ec.generate_private_key(ec.SECP256R1())
STRANGER = ec.generate_private_key(ec.SECP256R1())


def evidence(*sigs, rule=RULE, keys=None, configs=(IMAGE_ID,), bundles=(), **kwargs):
    keys = [("/keys/ci.pub", KEY.public_key())] if keys is None else keys
    material = Material(DIGEST, configs, tuple(sigs), tuple(bundles))
    return Evidence(NAME, rule, (material,), tuple(keys), **kwargs)


def test_a_signature_by_a_trusted_key_verifies():
    data = payload()
    verdict = signing.verdict(evidence(SimpleSignature(data, sign(KEY, data))), IMAGE_ID)
    assert verdict.status == "verified"
    assert DIGEST in verdict.message and "/keys/ci.pub" in verdict.message


@pytest.mark.parametrize("make", [lambda: rsa.generate_private_key(65537, 2048), ed25519.Ed25519PrivateKey.generate])
def test_rsa_and_ed25519_keys_verify_too(make):
    key, data = make(), payload()
    verdict = signing.verdict(evidence(SimpleSignature(data, sign(key, data)), keys=[("/k", key.public_key())]),
                              IMAGE_ID)
    assert verdict.status == "verified"


@pytest.mark.parametrize("sig, says", [
    (lambda d: SimpleSignature(d, sign(STRANGER, d)), "a key this hub does not trust"),
    (lambda d: SimpleSignature(payload(OTHER), sign(KEY, payload(OTHER))), f"made for {OTHER}"),
    (lambda d: SimpleSignature(payload(reference="registry.example.org/other/x:1"),
                               sign(KEY, payload(reference="registry.example.org/other/x:1"))), "another repository"),
    (lambda d: SimpleSignature(payload(kind="atomic container signature"),
                               sign(KEY, payload(kind="atomic container signature"))), "of type"),
    (lambda d: SimpleSignature(d + b" ", sign(KEY, d)), "does not trust"),          # payload altered after signing
    (lambda d: SimpleSignature(b"not json", sign(KEY, b"not json")), "not cosign simple signing"),
    (lambda d: SimpleSignature(d, "%%%"), "not base64"),
    (lambda d: SimpleSignature(d, sign(KEY, d), certificate="-----BEGIN CERTIFICATE-----"), "legacy format"),
])
def test_signatures_that_do_not_count_are_refused_and_say_why(sig, says):
    verdict = signing.verdict(evidence(sig(payload())), IMAGE_ID)
    assert verdict.status == "invalid"
    assert says in verdict.message


def test_one_good_signature_among_bad_ones_is_enough():
    data = payload()
    verdict = signing.verdict(evidence(SimpleSignature(data, sign(STRANGER, data)),
                                       SimpleSignature(data, sign(KEY, data))), IMAGE_ID)
    assert verdict.status == "verified"


def test_a_registry_manifest_that_is_not_the_local_image_is_refused():
    data = payload()
    verdict = signing.verdict(evidence(SimpleSignature(data, sign(KEY, data)), configs=("sha256:" + "d" * 64,)),
                              IMAGE_ID)
    assert verdict.status == "invalid" and "does not describe the local image" in verdict.message


def test_missing_unverifiable_uncovered_and_allowed():
    assert signing.verdict(evidence(), IMAGE_ID).status == "missing"
    no_digest = Evidence(NAME, RULE)
    assert signing.verdict(no_digest, IMAGE_ID).status == "missing"
    assert "built or tagged on this host" in signing.verdict(no_digest, IMAGE_ID).message
    down = Evidence(NAME, RULE, error="cannot reach the registry registry.example.org: refused")
    assert signing.verdict(down, IMAGE_ID).status == "unverifiable"
    assert signing.verdict(Evidence(NAME, None), IMAGE_ID).status == "uncovered"
    allowed = signing.TrustRule(("registry.example.org/**",), allow_unsigned=True)
    assert signing.verdict(Evidence(NAME, allowed), IMAGE_ID).status == "allowed-unsigned"


def test_an_unreadable_key_is_named_in_the_verdict():
    data = payload()
    verdict = signing.verdict(evidence(SimpleSignature(data, sign(KEY, data)),
                                       keys=[("/keys/gone.pub", "cannot read: No such file or directory")]), IMAGE_ID)
    assert verdict.status == "invalid" and "/keys/gone.pub: cannot read" in verdict.message


def test_bundles_without_identities_or_that_do_not_parse_are_refused():
    no_ids = signing.verdict(evidence(bundles=(b"{}",)), IMAGE_ID)
    assert no_ids.status == "invalid" and "names no identities" in no_ids.message


def test_a_bundle_with_an_unusable_trust_root_says_so():
    """With identities named but no verifier (the trust root did not load), the refusal names the trust root."""
    rule = signing.TrustRule(("registry.example.org/**",), identities=(("https://issuer.example.org", "ci"),))
    problem = "the Sigstore trust root (/etc/root.json) cannot be used: No such file"
    verdict = signing.verdict(evidence(rule=rule, keys=[], bundles=(b"{}",), trust_problem=problem), IMAGE_ID)
    assert verdict.status == "invalid" and problem in verdict.message, verdict.message
    assert "names no identities" not in verdict.message


def test_a_bundle_that_does_not_chain_to_the_trust_root_is_refused():
    """The public-good root shipped with sigstore, offline: a bundle from elsewhere must not verify."""
    from sigstore.models import ClientTrustConfig
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity

    verifier = Verifier(trusted_root=ClientTrustConfig.production(offline=True).trusted_root)
    policy = Identity(identity="ci@example.org", issuer="https://issuer.example.org")
    rule = signing.TrustRule(("registry.example.org/**",),
                             identities=(("https://issuer.example.org", "ci@example.org"),))
    for raw in (b"not json", json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}).encode()):
        verdict = signing.verdict(evidence(rule=rule, keys=[], bundles=(raw,), verifier=verifier,
                                           identity_policy=policy), IMAGE_ID)
        assert verdict.status == "invalid" and "Sigstore bundle" in verdict.message, verdict.message


@pytest.mark.parametrize("entry, problem", [
    ({"images": "x/*"}, "names no 'keys' and no 'identities'"),
    ({"images": "x/*", "keys": ["relative.pub"]}, "absolute paths"),
    ({"images": "X/*", "keys": ["/k.pub"]}, "lower-case"),
    ({"keys": ["/k.pub"]}, "'images' must be"),
    ({"images": "x/*", "identities": [{"subject": "a@b"}]}, "'identities' must be"),
    ({"images": "x/*", "keys": ["/k.pub"], "allow_unsigned": True}, "ambiguous"),
    ({"images": "x/*", "key": ["/k.pub"]}, "unknown keys key"),
    ("x/*", "must be a dict"),
])
def test_trust_policy_problems(entry, problem):
    problems = signing.policy_problems(Policy(signature_policy=(json.dumps(entry),)), "C.")
    assert any(problem in m and s == "C.signature_policy" for s, m in problems), problems


def test_first_matching_entry_applies():
    rules, problems = signing.parse_rules([
        json.dumps({"images": "registry.example.org/jupyter/*", "keys": ["/a.pub"]}),
        json.dumps({"images": ["registry.example.org/**", "docker.io/library/*"], "allow_unsigned": True})])
    assert not problems
    assert signing.rule_for(rules, NAME).keys == ("/a.pub",)
    assert signing.rule_for(rules, "registry.example.org/other/x").allow_unsigned
    assert signing.rule_for(rules, "docker.io/library/python").allow_unsigned
    assert signing.rule_for(rules, "quay.io/x/y") is None


def test_registry_digests_are_those_of_the_image_in_that_repository():
    info = {"RepoDigests": [f"{NAME}@{DIGEST}", f"registry.example.org/other/x@{OTHER}", "garbage"]}
    assert registry_digests(NAME, info) == [DIGEST]
    assert registry_digests(NAME, info, pinned=DIGEST) == [DIGEST]
    assert registry_digests(NAME, info, pinned=OTHER) == []
    assert registry_digests(NAME, {"RepoDigests": []}) == []


def test_signature_rules_are_declared():
    for rule in ("image.signature", "image.signature-missing", "image.signature-unverifiable"):
        assert RULES[rule].default_mode == "enforce"


def test_unusable_key_files_and_trust_roots_are_config_problems(tmp_path):
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("not a key")
    root = tmp_path / "trusted_root.json"
    root.write_text("{}")
    entries = (json.dumps({"images": "x/*", "keys": ["/nonexistent/ci.pub", str(garbage)]}),
               json.dumps({"images": "y/*", "identities": [{"issuer": "https://i", "subject": "s"}]}))
    problems = evidence_files.file_problems(Policy(signature_policy=entries, signature_trusted_root=str(root)), "C.")
    messages = [m for _, m in problems]
    assert any("/nonexistent/ci.pub: cannot read" in m for m in messages), messages
    assert any(f"{garbage}: not a PEM public key" in m for m in messages), messages
    assert any(f"Sigstore trust root ({root}) cannot be used" in m for m in messages), messages
    assert evidence_files.file_problems(Policy(signature_policy=entries[1:]), "C.") == []  # the public-good root loads
