"""Issue 23 item 3: conda publish attestations (CEP 27) signed by a Sigstore identity.

The bundles are made keyless by sigstore-python's own ``Signer`` against the rig's local Sigstore
(tests/sigstorerig.py: no public Fulcio or Rekor is reachable here) with identity tokens from the
rig's real OIDC provider, and judged by :func:`conda_attestations.verdict` with sigstore's
``Verifier`` over the instance's ``trusted_root.json``, as the hub does for a channel whose
``conda_attestation_keys`` entry names the identity.
"""

import hashlib
import json

import pytest
from oidcrig import IdP

import attestrig
import sigstorerig
from hardened_spawner.admission import conda_attestations, evidence

pytestmark = []  # neither the Docker daemon nor a hub: the rig's OIDC provider and Sigstore stand-in, started here
CHANNEL = "https://conda.anaconda.org/conda-forge"  # the statement's targetChannel; verdict takes it normalised
NORMAL = "conda.anaconda.org/conda-forge"
FILE, SHA = "tornado-6.6.1-py311_hs_0.conda", hashlib.sha256(b"tornado").hexdigest()


@pytest.fixture(scope="module")
def signed(tmp_path_factory, idp):
    work = tmp_path_factory.mktemp("conda-keyless")
    other = IdP(work / "other-idp.log").start()
    a = sigstorerig.Sigstore(work, [idp.issuer, other.issuer], "rig-a").start()
    b = sigstorerig.Sigstore(work, [idp.issuer], "rig-b").start()
    try:
        alice, bob = (sigstorerig.identity_token(idp, u) for u in ("alice", "bob"))
        bundles = {"good": attestrig.keyless_bundle(a, alice, FILE, SHA, CHANNEL),
                   "subject": attestrig.keyless_bundle(a, bob, FILE, SHA, CHANNEL),
                   "issuer": attestrig.keyless_bundle(a, sigstorerig.identity_token(other, "alice"), FILE, SHA,
                                                      CHANNEL),
                   "root": attestrig.keyless_bundle(b, alice, FILE, SHA, CHANNEL),
                   "channel": attestrig.keyless_bundle(a, alice, FILE, SHA, "https://prefix.dev/conda-forge")}
        root = a.write_trusted_root()
    finally:
        a.stop(), b.stop(), other.stop()
    verifier, policy, problem = evidence.sigstore_verifier([(idp.issuer, "alice@example.org")], str(root))
    assert not problem, problem
    return {"bundles": bundles, "sigstore": (verifier, policy), "issuer": idp.issuer, "other": other.issuer}


def judge(signed, *bundles, sigstore=True):
    body, digest = attestrig.sidecar(*bundles)
    return conda_attestations.verdict(body, digest, FILE, SHA, NORMAL, (), sigstore=signed["sigstore"] if sigstore
                                      else None)


def test_an_attestation_by_the_trusted_identity_is_attested(signed):
    assert judge(signed, signed["bundles"]["good"]) == (conda_attestations.ATTESTED, "")
    assert judge(signed, signed["bundles"]["subject"], signed["bundles"]["good"])[0] == conda_attestations.ATTESTED


@pytest.mark.parametrize("case, why", [
    ("subject", "its certificate names bob@example.org from OIDC issuer {issuer}, not an identity the trust "
                "policy names"),
    ("issuer", "its certificate names alice@example.org from OIDC issuer {other}, not an identity the trust "
               "policy names"),
    ("root", "failed to build timestamp certificate chain")])
def test_another_identity_or_trust_root_is_untrusted(signed, case, why):
    status, message = judge(signed, signed["bundles"][case])
    assert status == conda_attestations.UNTRUSTED, message
    assert message.startswith("no attestation of this file and hash is signed by a trusted key or identity (found "
                              "a Sigstore bundle that does not verify: "), message
    assert why.format(**signed) in message, message


def test_a_trusted_identity_publishing_to_another_channel_is_wrong_channel(signed):
    assert judge(signed, signed["bundles"]["channel"]) == (
        conda_attestations.WRONG_CHANNEL, "its trusted attestation publishes it to https://prefix.dev/conda-forge")


def test_a_keyless_attestation_needs_an_identity_trusted_for_the_channel(signed):
    status, message = judge(signed, signed["bundles"]["good"], sigstore=False)
    assert status == conda_attestations.UNTRUSTED and "no identity is trusted for the channel" in message, message


def test_a_bundle_whose_log_entry_was_altered_does_not_verify(signed):
    tampered = json.loads(json.dumps(signed["bundles"]["good"]))
    entry = tampered["verificationMaterial"]["tlogEntries"][0]
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)  # the signed entry timestamp covers it
    status, message = judge(signed, tampered)
    assert status == conda_attestations.UNTRUSTED and "SET: invalid inclusion promise" in message, message
