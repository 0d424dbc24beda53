"""Issue 23 item 3 on the rig's real channel: a CEP 50 channel serving identity-signed publish attestations.

The rig's private channel (rig/conda_channel.py, py-rattler-built and indexed) is copied with
CEP 50 sidecars (tests/attestrig.py) and served over HTTP: ``idna`` is attested keyless by
alice@example.org, ``jedi`` keyless by bob@example.org (sigstore-python's ``Signer`` against the
rig's local Sigstore, tests/sigstorerig.py, since no public Sigstore is reachable here), every
other package with a key. The hub's policy for the real conda image
(rig/conda-images.sh) trusts the key and alice from the rig's OIDC provider.
"""

import json
import re

import pytest
from test_admission_conda_evasion import REAL, STATE, serve

import attestrig
import sigstorerig
from hardened_spawner.tools import sbom as sbom_tool
from hardened_spawner.tools.check_image import check

pytestmark = [pytest.mark.docker]
KEYLESS = {"idna": "alice", "jedi": "bob"}


@pytest.fixture(scope="module")
def keyless_channel(dclient, tmp_path_factory, idp):
    labels = dclient.inspect_image(REAL)["Config"]["Labels"]
    explicit = STATE / "conda-exports" / labels["hardened-spawner.test-inputs"] / "base" / "explicit.txt"
    md5 = re.search(r"#([0-9a-f]{32})", explicit.read_text())[1]
    source = next(d / "conda-forge" for d in STATE.glob("conda-*/channels")
                  if md5 in (d / "conda-forge/noarch/repodata.json").read_text())
    work = tmp_path_factory.mktemp("keyless-channel")
    key, instance = attestrig.new_key(), sigstorerig.Sigstore(work, [idp.issuer]).start()
    server, url = serve(work / "served")
    target = f"{url}/conda-forge"
    try:
        tokens = {user: sigstorerig.identity_token(idp, user) for user in set(KEYLESS.values())}

        def sign(subdir, file_name, sha256):
            user = KEYLESS.get(file_name.rsplit("-", 2)[0])
            if user:
                return [attestrig.keyless_bundle(instance, tokens[user], file_name, sha256, target)]
            return [attestrig.bundle(key, file_name, sha256, target)]

        attestrig.attested_channel(source, work / "served" / "conda-forge", sign)
        keys = work / "publishers.pem"
        keys.write_bytes(attestrig.public_pem(key))
        root = instance.write_trusted_root()
    finally:
        instance.stop()
    try:
        yield {"url": target, "keys": str(keys), "root": str(root), "issuer": idp.issuer, "explicit": str(explicit),
               "mirror": labels["hardened-spawner.conda-mirror"] + "/conda-forge"}
    finally:
        server.kill()
        server.wait()


def policy(ch, *subjects):
    identities = [{"issuer": ch["issuer"], "subject": s} for s in subjects]
    return {"HardenedDockerSpawner": {
        "conda_allowed_channels": ["conda-forge"],
        "conda_channel_mirrors": {ch["mirror"]: "conda-forge", ch["url"]: "conda-forge"},
        "conda_verify_channels": {"conda-forge": ch["url"]}, "conda_lock_file": ch["explicit"],
        "conda_attestation_keys": {"conda-forge": [ch["keys"], *identities]},
        "admission_signature_trusted_root": ch["root"]}}


def test_the_trusted_identitys_attestation_admits_and_another_identitys_is_untrusted(keyless_channel):
    decision, _ = check(REAL, policy(keyless_channel, "alice@example.org"))
    denied = {f.rule: f.message for f in decision.findings if f.action == "deny"}
    assert not decision.admitted and set(denied) == {"conda.attestation-untrusted"}, decision.findings
    message = denied["conda.attestation-untrusted"]
    assert re.search(r"\(untrusted\): jedi 0\.20\.1 \(pyh_hs_0\): no attestation of this file and hash is signed by "
                     r"a trusted key or identity \(found a Sigstore bundle that does not verify: its certificate "
                     rf"names bob@example\.org from OIDC issuer {re.escape(keyless_channel['issuer'])}, not an "
                     r"identity the trust policy names\)\.$", message), message
    assert "idna" not in message  # alice's keyless attestation counts
    doc = json.loads(sbom_tool.document(REAL, policy(keyless_channel, "alice@example.org")))
    status = {c["name"]: {p["name"]: p["value"] for p in c.get("properties", ())}.get("hardened-spawner:attestation")
              for c in doc["components"] if c["purl"].startswith("pkg:conda/")}
    assert (status["idna"], status["jedi"]) == ("attested", "untrusted"), status  # what admission proved, in the SBOM
    both, _ = check(REAL, policy(keyless_channel, "alice@example.org", "bob@example.org"))
    assert both.admitted and not [f for f in both.findings if f.rule.startswith("conda.attestation")], both.findings
    keys_only, _ = check(REAL, policy(keyless_channel))
    untrusted = next(f.message for f in keys_only.findings if f.rule == "conda.attestation-untrusted")
    assert "idna 3.21" in untrusted and "jedi 0.20.1" in untrusted, untrusted
    assert "no identity is trusted for the channel" in untrusted, untrusted
