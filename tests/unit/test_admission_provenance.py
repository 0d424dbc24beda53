"""SLSA provenance verdicts (pure): policy entries, DSSE envelopes, subjects, builders, sources, levels.

Statements are built with sigstore's StatementBuilder and SLSA models and signed with
securesystemslib's DSSE (tests/signrig.py), as an image CI would make them.
"""

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import signrig
from hardened_spawner.admission import provenance
from hardened_spawner.admission.evidence import Evidence
from hardened_spawner.admission.policy import Policy
from hardened_spawner.admission.registry import Material
from hardened_spawner.admission.signing import TrustRule

NAME = "registry.example.org/jupyter/scipy"
DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
IMAGE_ID = "sha256:" + "c" * 64
BUILDER = "https://github.com/example/builders/.github/workflows/image.yml@refs/tags/v2"
LOW_BUILDER = "https://ci.example.org/shared-runner"
REPO = "https://github.com/example/images"
KEY = ec.generate_private_key(ec.SECP256R1())
STRANGER = ec.generate_private_key(ec.SECP256R1())
TRUST = TrustRule(("registry.example.org/jupyter/*",), keys=("/keys/ci.pub",))
RULE = provenance.ProvenanceRule(("registry.example.org/jupyter/*",), ((BUILDER, 3), (LOW_BUILDER, 1)),
                                 (f"{REPO}@refs/heads/main",), (signrig.GITHUB_WORKFLOW,), 3)


def attested(builder=BUILDER, repository=REPO, ref="refs/heads/main", key=KEY, subject=DIGEST, version="v1",
             build_type=signrig.GITHUB_WORKFLOW):
    kind, predicate = signrig.provenance(builder, repository, ref, build_type, version)
    return signrig.envelope(signrig.statement(subject, kind, predicate), key)


def evidence(*envelopes, keys=None, configs=(IMAGE_ID,), **kwargs):
    keys = [("/keys/ci.pub", KEY.public_key())] if keys is None else keys
    return Evidence(NAME, TRUST, (Material(DIGEST, configs, envelopes=tuple(envelopes)),), tuple(keys), **kwargs)


def verdict(*envelopes, rule=RULE, **kwargs):
    return provenance.verdict(evidence(*envelopes, **kwargs), rule, IMAGE_ID)


@pytest.mark.parametrize("version", ["v1", "v0.2"])
def test_provenance_from_a_trusted_builder_and_source_passes(version):
    found = verdict(attested(version=version))
    assert (found.status, found.problems, found.level) == ("checked", {}, 3)
    assert f"signed by /keys/ci.pub, built by {BUILDER} (SLSA Build L3)" in found.message


@pytest.mark.parametrize("kwargs, rule, says", [
    ({"builder": "https://laptop.example.org"}, "provenance.builder-not-allowed", "built by https://laptop.example.org"),
    ({"build_type": "https://example.org/other/v1"}, "provenance.builder-not-allowed", "build type https://example.org/other/v1"),
    ({"repository": "https://github.com/attacker/images"}, "provenance.source-not-allowed",
     "built from https://github.com/attacker/images@refs/heads/main"),
    ({"ref": "refs/heads/unreviewed"}, "provenance.source-not-allowed", "@refs/heads/unreviewed, not a source"),
    ({"builder": LOW_BUILDER}, "provenance.level-too-low", "declared SLSA Build L1; the policy for"),
])
def test_what_the_policy_refuses_is_named_under_its_rule(kwargs, rule, says):
    found = verdict(attested(**kwargs))
    assert found.status == "checked" and list(found.problems) == [rule], found
    assert says in found.problems[rule]


def test_one_attestation_that_satisfies_the_policy_is_enough():
    found = verdict(attested(builder="https://laptop.example.org"), attested())
    assert (found.status, found.problems) == ("checked", {})


def test_another_key_is_an_untrusted_signer():
    found = verdict(attested(key=STRANGER))
    assert found.status == "untrusted"
    assert "signed by a key the trust policy does not name for " + NAME in found.message


def test_no_keys_in_the_trust_policy_means_no_trusted_signer():
    found = verdict(attested(), keys=[])
    assert found.status == "untrusted" and "names no public key" in found.message


def test_provenance_for_another_digest_is_missing_and_says_for_what():
    found = verdict(attested(subject=OTHER))
    assert found.status == "missing"
    assert f"made for {OTHER}, not for {DIGEST}" in found.message


def test_no_attestation_no_digest_and_a_registry_that_fails():
    assert verdict().status == "missing"
    no_digest = provenance.verdict(Evidence(NAME, TRUST), RULE, IMAGE_ID)
    assert no_digest.status == "missing" and "no registry digest" in no_digest.message
    down = verdict(error="cannot reach the registry registry.example.org: refused")
    assert down.status == "unverifiable" and "refused" in down.message


def test_a_registry_manifest_that_is_not_the_local_image_has_no_provenance():
    found = verdict(attested(), configs=(OTHER,))
    assert found.status == "missing" and "does not describe the local image" in found.message


def test_other_attestations_and_broken_envelopes_are_not_provenance():
    scan = signrig.envelope(signrig.statement(DIGEST, "https://cosign.sigstore.dev/attestation/vuln/v1", {}), KEY)
    found = verdict(scan, b"not json")
    assert found.status == "missing" and "cannot be read" in found.message


def test_a_tampered_payload_does_not_verify():
    doc = json.loads(attested(builder="https://laptop.example.org"))
    good = json.loads(attested())
    doc["payload"] = good["payload"]  # the trusted builder's statement under the other one's signature
    assert verdict(json.dumps(doc).encode()).status == "untrusted"


def test_signatures_verify_whatever_their_keyid():
    doc = json.loads(attested())
    for signature in doc["signatures"]:
        signature.pop("keyid")  # cosign writes "", DSSE makes it optional
    assert verdict(json.dumps(doc).encode()).problems == {}


@pytest.mark.parametrize("entry, problem", [
    ({"images": "x/*"}, "'builders' must map"),
    ({"images": "x/*", "builders": {"b": 4}}, "'builders' must map"),
    ({"images": "x/*", "builders": {"b": True}}, "'builders' must map"),
    ({"images": "x/*", "builders": {"b": 2}, "sources": ["https://github.com/x"]}, "repository@ref patterns"),
    ({"images": "x/*", "builders": {"b": 2}, "min_level": 0}, "'min_level' must be 1, 2 or 3"),
    ({"images": "X", "builders": {"b": 2}}, "lower-case"),
    ({"images": "x/*", "builders": {"b": 2}, "level": 3}, "unknown keys level"),
])
def test_policy_problems(entry, problem):
    trust = (json.dumps({"images": "x/*", "keys": ["/k.pub"]}),)
    problems = provenance.policy_problems(Policy(provenance_policy=(json.dumps(entry),), signature_policy=trust), "C.")
    assert any(problem in m and s == "C.provenance_policy" for s, m in problems), problems


def test_a_provenance_policy_without_trusted_signers_is_a_problem():
    entry = json.dumps({"images": "x/*", "builders": {"b": 2}})
    problems = provenance.policy_problems(Policy(provenance_policy=(entry,)), "")
    assert len(problems) == 1 and "names no key or identity" in problems[0][1]
    trust = (json.dumps({"images": "x/*", "keys": ["/k.pub"]}),)
    assert provenance.policy_problems(Policy(provenance_policy=(entry,), signature_policy=trust), "") == []


def test_first_matching_entry_applies():
    rules, problems = provenance.parse_rules([{"images": "r.example.org/a/*", "builders": {"b1": 3}},
                                              {"images": "r.example.org/**", "builders": {"b2": 2}}])
    assert problems == []
    assert provenance.rule_for(rules, "r.example.org/a/x").builders == (("b1", 3),)
    assert provenance.rule_for(rules, "r.example.org/b/x").builders == (("b2", 2),)
    assert provenance.rule_for(rules, "other.example.org/x") is None


def test_a_provenance_bundle_that_does_not_verify_is_an_untrusted_signer():
    """A referrer claiming SLSA provenance, with no certificate chaining to the (public-good, offline) root."""
    import base64

    from sigstore.models import ClientTrustConfig
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity

    kind, predicate = signrig.provenance(BUILDER, REPO, "refs/heads/main")
    envelope = json.loads(signrig.envelope(signrig.statement(DIGEST, kind, predicate), KEY))
    bundle = json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                         "dsseEnvelope": envelope}).encode()
    assert json.loads(base64.b64decode(envelope["payload"]))["predicateType"] == kind
    verifier = Verifier(trusted_root=ClientTrustConfig.production(offline=True).trusted_root)
    identity = Identity(identity="ci@example.org", issuer="https://issuer.example.org")
    found = provenance.verdict(Evidence(NAME, TRUST, (Material(DIGEST, (IMAGE_ID,), bundles=(bundle,)),), (),
                                        verifier, identity), RULE, IMAGE_ID)
    assert found.status == "untrusted" and "Sigstore bundle" in found.message, found.message
    no_identities = provenance.verdict(Evidence(NAME, TRUST, (Material(DIGEST, (IMAGE_ID,), bundles=(bundle,)),)),
                                       RULE, IMAGE_ID)
    assert no_identities.status == "untrusted" and "names no identities" in no_identities.message
    problem = "the Sigstore trust root (/etc/root.json) cannot be used: No such file"
    unusable = provenance.verdict(Evidence(NAME, TRUST, (Material(DIGEST, (IMAGE_ID,), bundles=(bundle,)),),
                                           trust_problem=problem), RULE, IMAGE_ID)
    assert unusable.status == "untrusted" and f"a Sigstore bundle, but {problem}" in unusable.message, unusable.message
