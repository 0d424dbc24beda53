"""Issue 24 item 4: the hub's SLSA verification summary, built, signed and checked by an independent verifier.

The summary is signed by the project's shell (securesystemslib's CryptoSigner); the test verifies
it the way a registry or CI gate would, with securesystemslib's DSSE verification and the public key
alone (``Envelope.verify``), then reads the statement.
"""

import dataclasses
import datetime
import hashlib
import json
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from hardened_spawner.admission import model, vsa, vsa_issuer
from hardened_spawner.admission.policy import Policy

DIGEST = "sha256:" + "ab" * 32
IMAGE = "registry.example.org/jupyter/base:1"
INPUT = ("registry.example.org/jupyter/base:sha256-" + "ab" * 32 + ".att", "cd" * 32)
NOW = datetime.datetime(2026, 12, 7, 18, 0, tzinfo=datetime.timezone.utc)


def write_key(path, key, mode=0o600):
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


@pytest.fixture
def key(tmp_path):
    private = ed25519.Ed25519PrivateKey.generate()
    return write_key(tmp_path / "vsa.pem", private), private.public_key()


def verified_statement(envelope, public_key):
    """The statement of ``envelope`` after securesystemslib's DSSE verification with ``public_key``."""
    parsed = Envelope.from_dict(json.loads(envelope))
    parsed.verify([SSlibKey.from_crypto(public_key)], 1)
    assert parsed.payload_type == "application/vnd.in-toto+json"
    return json.loads(parsed.payload)


def decision(admitted=True, level=3, inputs=(INPUT,)):
    return model.Decision(admitted, digest=f"registry.example.org/jupyter/base@{DIGEST}", level=level, inputs=inputs)


def test_the_summary_verifies_with_the_public_key_and_states_the_decision(key):
    path, public = key
    policy = Policy(image_allowlist=("registry.example.org/jupyter/*",))
    digest, envelope = vsa_issuer.Issuer(str(path), "https://hub.example.org/").envelope(policy, IMAGE, decision(),
                                                                                         now=NOW)
    assert digest == f"registry.example.org/jupyter/base@{DIGEST}"
    statement = verified_statement(envelope, public)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{"name": "registry.example.org/jupyter/base", "digest": {"sha256": "ab" * 32}}]
    assert statement["predicateType"] == "https://slsa.dev/verification_summary/v1"
    predicate = statement["predicate"]
    assert predicate["verifier"] == {"id": "https://hub.example.org/"}
    assert predicate["timeVerified"] == "2026-12-07T18:00:00Z"
    assert predicate["resourceUri"] == f"registry.example.org/jupyter/base@{DIGEST}"
    assert predicate["policy"] == {"uri": vsa.POLICY_URI, "digest": {"sha256": vsa.policy_digest(policy, {})}}
    assert predicate["inputAttestations"] == [{"uri": INPUT[0], "digest": {"sha256": INPUT[1]}}]
    assert (predicate["verificationResult"], predicate["verifiedLevels"]) == ("PASSED", ["SLSA_BUILD_LEVEL_3"])
    assert predicate["slsaVersion"] == "1.0"


def test_an_ecdsa_key_signs_too(tmp_path):
    private = ec.generate_private_key(ec.SECP256R1())
    path = write_key(tmp_path / "ec.pem", private)
    _, envelope = vsa_issuer.Issuer(str(path), "https://hub.example.org/").envelope(Policy(), IMAGE, decision())
    assert verified_statement(envelope, private.public_key())["predicate"]["verificationResult"] == "PASSED"


def test_a_refused_image_gets_a_failed_summary_and_no_provenance_means_level_0(key):
    path, public = key
    issuer = vsa_issuer.Issuer(str(path), "https://hub.example.org/")
    _, refused = issuer.envelope(Policy(), IMAGE, decision(admitted=False, level=0, inputs=()))
    predicate = verified_statement(refused, public)["predicate"]
    assert (predicate["verificationResult"], predicate["verifiedLevels"]) == ("FAILED", ["FAILED"])
    _, unattested = issuer.envelope(Policy(), IMAGE, decision(level=0, inputs=()))
    predicate = verified_statement(unattested, public)["predicate"]
    assert (predicate["verificationResult"], predicate["verifiedLevels"]) == ("PASSED", ["SLSA_BUILD_LEVEL_0"])


def test_an_image_with_no_registry_digest_is_named_by_its_id(key):
    path, public = key
    local = model.Decision(True, digest=DIGEST)
    _, envelope = vsa_issuer.Issuer(str(path), "https://hub.example.org/").envelope(
        Policy(), "hardened-spawner/singleuser:local", local)
    statement = verified_statement(envelope, public)
    assert statement["subject"] == [{"name": "docker.io/hardened-spawner/singleuser", "digest": {"sha256": "ab" * 32}}]


def test_a_tampered_envelope_or_another_key_fails_verification(key):
    """A check of the test's verifier: it does refuse what it must."""
    path, public = key
    _, envelope = vsa_issuer.Issuer(str(path), "https://hub.example.org/").envelope(Policy(), IMAGE,
                                                                                  decision(admitted=False))
    doc = json.loads(envelope)
    forged = Envelope.from_dict(doc)
    forged.payload = forged.payload.replace(b'"FAILED"', b'"PASSED"')
    with pytest.raises(VerificationError):
        forged.verify([SSlibKey.from_crypto(public)], 1)
    with pytest.raises(VerificationError):
        verified_statement(envelope, ed25519.Ed25519PrivateKey.generate().public_key())


def test_the_policy_digest_is_stable_and_covers_settings_defaults_and_file_contents(tmp_path):
    pub = tmp_path / "cosign.pub"
    pub.write_text("key one")
    trust = (json.dumps({"images": "registry.example.org/**", "keys": [str(pub)]}),)
    policy = Policy(signature_policy=trust)
    assert vsa.policy_files(policy) == (str(pub),)
    first = vsa.policy_digest(policy, vsa_issuer.file_digests(vsa.policy_files(policy)))
    os.utime(pub, (1, 1))  # a touched file is the same policy (Policy.digest, a cache key, would change)
    assert vsa.policy_digest(Policy(signature_policy=trust), vsa_issuer.file_digests((str(pub),))) == first
    pub.write_text("key two")  # the same path with another key is another policy
    assert vsa.policy_digest(policy, vsa_issuer.file_digests((str(pub),))) != first
    assert vsa.policy_digest(policy, {str(pub): None}) not in (first, vsa.policy_digest(policy, {}) + "x")
    # an explicit mode equal to the default is the same effective policy; another mode is not
    same = dataclasses.replace(policy, modes=(("image.tag-latest", Policy().mode("image.tag-latest")),))
    other = dataclasses.replace(policy, modes=(("image.tag-latest", "off"),))
    files = vsa_issuer.file_digests((str(pub),))
    assert vsa.policy_digest(same, files) == vsa.policy_digest(policy, files) != vsa.policy_digest(other, files)
    canonical = vsa.canonical_policy(policy, files)
    assert canonical == json.dumps(json.loads(canonical), sort_keys=True, separators=(",", ":")).encode()


def test_the_key_file_is_checked_like_the_hubs_other_keys(tmp_path):
    private = ed25519.Ed25519PrivateKey.generate()
    good = write_key(tmp_path / "good.pem", private)
    assert vsa_issuer.key_problems(str(good)) == []
    loose = write_key(tmp_path / "loose.pem", private, mode=0o644)
    assert vsa_issuer.key_problems(str(loose)) == [
        f"{loose} has mode 0644, so others may read the hub's signing key: chmod 600 {loose}"]
    foreign = write_key(tmp_path / "foreign.pem", private)
    os.chown(foreign, 4242, -1)
    assert f"{foreign} is owned by uid 4242" in vsa_issuer.key_problems(str(foreign))[0]
    link = tmp_path / "link.pem"
    link.symlink_to(good)
    assert "not a regular file" in vsa_issuer.key_problems(str(link))[0]
    public = tmp_path / "public.pem"
    public.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    public.chmod(0o600)
    assert "is not an unencrypted PEM private key" in vsa_issuer.key_problems(str(public))[0]
    assert "cannot be read" in vsa_issuer.key_problems(str(tmp_path / "absent.pem"))[0]


def test_issue_keeps_the_envelope_for_the_endpoint_and_names_it(key):
    path, public = key
    made = decision()
    field = vsa_issuer.Issuer(str(path), "https://hub.example.org/").issue(Policy(), IMAGE, made, "/hub/")
    stored = vsa_issuer.STORE.get(DIGEST)
    assert vsa_issuer.STORE.get(f"registry.example.org/jupyter/base@{DIGEST}") == stored
    assert field == {"result": "PASSED", "sha256": hashlib.sha256(stored).hexdigest(),
                     "uri": f"/hub/api/hardened-spawner/vsa/registry.example.org/jupyter/base@{DIGEST}"}
    assert verified_statement(stored, public)["subject"][0]["digest"] == {"sha256": "ab" * 32}
    assert vsa_issuer.Issuer("", "").issue(Policy(), IMAGE, made) is None
    os.chmod(path, 0o640)  # loosened after the hub started: no summary, said in the audit field
    assert "chmod 600" in vsa_issuer.Issuer(str(path), "https://hub.example.org/").issue(Policy(), IMAGE,
                                                                                        made)["error"]


def test_a_loose_key_or_no_verifier_id_stops_the_hub(tmp_path):
    from traitlets.config import Config

    from hardened_spawner.config_check import problems_in

    path = write_key(tmp_path / "vsa.pem", ed25519.Ed25519PrivateKey.generate(), mode=0o644)
    c = Config()
    c.HardenedDockerSpawner.admission_vsa_key_file = str(path)
    assert [s for s, _ in problems_in(c)] == ["HardenedDockerSpawner.admission_vsa_verifier_id",
                                              "HardenedDockerSpawner.admission_vsa_key_file"]
    c.HardenedDockerSpawner.admission_vsa_verifier_id = "https://hub.example.org/"
    assert problems_in(c) == [("HardenedDockerSpawner.admission_vsa_key_file",
                               f"{path} has mode 0644, so others may read the hub's signing key: chmod 600 {path}")]
    path.chmod(0o600)
    assert problems_in(c) == []


def test_the_decision_is_about_the_digest_in_the_repository_asked_for():
    """One content pushed to two repositories: each has its own policy entry and attestations."""
    from hardened_spawner.admission.engine import decided_digest
    from hardened_spawner.decisions.reference import parse

    a, b = f"reg.example/a@sha256:{'22' * 32}", f"reg.example/b@sha256:{'33' * 32}"
    info = {"Id": "sha256:" + "11" * 32, "RepoDigests": [a, b]}
    assert decided_digest(info, parse("reg.example/b:1")) == b
    assert decided_digest(info, parse("reg.example/a:1")) == a
    assert decided_digest(info, parse("reg.example/c:1")) == a  # not pulled from there: as before
    assert decided_digest({"Id": info["Id"]}, parse("reg.example/c:1")) == info["Id"]


def test_a_replaced_key_signs_the_next_summary(key):
    """The parsed key is reused while the file is unchanged: a rotated key counts at once."""
    path, public = key
    issuer = vsa_issuer.Issuer(str(path), "https://hub.example.org/")
    _, first = issuer.envelope(Policy(), IMAGE, decision())
    verified_statement(first, public)
    rotated = ed25519.Ed25519PrivateKey.generate()
    write_key(path.with_suffix(".new"), rotated)
    os.replace(path.with_suffix(".new"), path)
    _, second = issuer.envelope(Policy(), IMAGE, decision())
    verified_statement(second, rotated.public_key())
    with pytest.raises(VerificationError):
        verified_statement(second, public)
