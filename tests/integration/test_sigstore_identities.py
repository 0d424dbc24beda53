"""Issue 24 item 1: keyless image signatures and SLSA provenance by a Sigstore identity the admin trusts.

No public Fulcio or Rekor is reachable here, so the bundles come from the rig's local Sigstore
(tests/sigstorerig.py): sigstore-python's own ``Signer`` with identity tokens from the rig's real
OIDC provider, against a Fulcio-like CA and a Rekor v1 log. The hub trusts ``alice@example.org``
from the first provider for ``<registry>/hs/ks-*``, with the first instance's ``trusted_root.json``.
The bundles are attached as OCI referrers (the ``sha256-<hex>`` tag) of the images on the rig's
real registry.
"""

import json

import pytest
from conftest import containers_of
from hubrig import REPO, Hub, remove_user_artifacts
from oidcrig import IdP
from test_provenance import BUILDER, SOURCE
from test_signatures import check_image, push

import signrig
import sigstorerig
from hardened_spawner.admission import signing

pytestmark = [pytest.mark.docker, pytest.mark.hub]
TRUSTED = "alice@example.org"
# image -> (who signs it, who signs its provenance): (sigstore instance, IdP, user); the rules that refuse it
CASES = {
    "good": (("a", "idp", "alice"), ("a", "idp", "alice"), set()),
    "subject": (("a", "idp", "bob"), ("a", "idp", "bob"), {"image.signature", "provenance.untrusted-signer"}),
    "issuer": (("a", "other", "alice"), ("a", "other", "alice"), {"image.signature", "provenance.untrusted-signer"}),
    "root": (("b", "idp", "alice"), ("b", "idp", "alice"), {"image.signature", "provenance.untrusted-signer"}),
    "provsubject": (("a", "idp", "alice"), ("a", "idp", "bob"), {"provenance.untrusted-signer"}),
}


@pytest.fixture(scope="module")
def keyless(tmp_path_factory, dclient, image, registry, idp):
    work = tmp_path_factory.mktemp("keyless")
    other = IdP(work / "other-idp.log").start()  # another issuer, same user names
    instances = {"a": sigstorerig.Sigstore(work, [idp.issuer, other.issuer], "rig-a").start(),
                 "b": sigstorerig.Sigstore(work, [idp.issuer], "rig-b").start()}
    providers = {"idp": idp, "other": other}
    try:
        tokens = {(p, user): sigstorerig.identity_token(providers[p], user)
                  for p in providers for user in ("alice", "bob")}

        def bundle(who, digest, predicate_type, predicate):
            instance, provider, user = who
            statement = signrig.statement(digest, predicate_type, predicate)
            return instances[instance].sign_statement(tokens[(provider, user)], statement)

        refs, digests = {}, {}
        kind, predicate = signrig.provenance(BUILDER, SOURCE, "refs/heads/main")
        for name, (signer, prov_signer, _) in CASES.items():
            refs[name] = f"{registry}/hs/ks-{name}:1"
            digests[name] = push(dclient, image, refs[name])
            signrig.attach_bundle(refs[name].rsplit(":", 1)[0], digests[name],
                                  bundle(signer, digests[name], signing.SIGN_PREDICATE, {}),
                                  bundle(prov_signer, digests[name], kind, predicate))
        root = instances["a"].write_trusted_root()
    finally:
        for instance in instances.values():
            instance.stop()
        other.stop()
    return {"refs": refs, "digests": digests, "root": root, "registry": registry, "issuer": idp.issuer,
            "other_issuer": other.issuer}


def policy_config(keyless, trusted_root=None):
    registry = keyless["registry"]
    trust = [{"images": f"{registry}/hs/ks-*", "identities": [{"issuer": keyless["issuer"], "subject": TRUSTED}]}]
    prov = [{"images": f"{registry}/hs/ks-*", "builders": {BUILDER: 3}, "sources": [f"{SOURCE}@refs/heads/main"],
             "min_level": 3}]
    return (f"c.HardenedDockerSpawner.admission_signature_policy = {trust!r}\n"
            f"c.HardenedDockerSpawner.admission_provenance_policy = {prov!r}\n"
            f"c.HardenedDockerSpawner.admission_signature_trusted_root = {str(trusted_root or keyless['root'])!r}\n"
            f"c.HardenedDockerSpawner.admission_registry_plain_http = [{registry!r}]\n"
            "c.HardenedDockerSpawner.admission_registry_timeout = 3.0\n")


def test_check_image_admits_the_trusted_identity_and_refuses_the_others(tmp_path, dclient, keyless):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n" + policy_config(keyless))
    for name, (_, _, refused) in CASES.items():
        ref, digest = keyless["refs"][name], keyless["digests"][name]
        dclient.pull(ref)
        code, out, err = check_image(config, ref)
        report = json.loads(out)
        denied = {f["rule"] for f in report["findings"] if f["action"] == "deny"}
        messages = {f["rule"]: f["message"] for f in report["findings"]}
        if not refused:
            assert (code, report["admitted"], denied) == (0, True, set()), (name, report, err)
            assert report["signature"] == f"{digest} signed by {TRUSTED} (Sigstore bundle).", report
            assert report["provenance"] == (f"{digest}: SLSA provenance signed by {TRUSTED}, built by {BUILDER} "
                                            "(SLSA Build L3)."), report
            continue
        assert (code, report["admitted"]) == (1, False) and denied == refused, (name, report)
        for rule in refused:
            assert "Sigstore bundle that does not verify" in messages[rule], (name, rule, messages[rule])
        why = messages["provenance.untrusted-signer"]
        if name in ("subject", "provsubject"):
            assert (f"its certificate names bob@example.org from OIDC issuer {keyless['issuer']}, not an identity "
                    "the trust policy names") in why, why
        elif name == "issuer":
            assert (f"its certificate names {TRUSTED} from OIDC issuer {keyless['other_issuer']}, not an identity "
                    "the trust policy names") in why, why
        else:
            assert "failed to build timestamp certificate chain" in why, why


def test_an_unreadable_or_invalid_trust_root_fails_closed(tmp_path, dclient, keyless):
    bad = tmp_path / "trusted_root.json"
    bad.write_text('{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1", "tlogs": "no"}')
    dclient.pull(keyless["refs"]["good"])
    for root in (tmp_path / "missing.json", bad):
        config = tmp_path / "jupyterhub_config.py"
        config.write_text(f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n" + policy_config(keyless, root))
        code, out, err = check_image(config, keyless["refs"]["good"])
        assert code != 0, (root, out, err)
        assert f"admission_signature_trusted_root: the Sigstore trust root ({root}) cannot be used" in out + err, \
            (out, err)


def test_the_hub_refuses_to_start_with_an_invalid_trust_root(tmp_path, keyless):
    bad = tmp_path / "trusted_root.json"
    bad.write_text("{not json")
    hub = Hub(tmp_path / "hub", policy_config(keyless, bad))
    hub.start(wait=False)
    try:
        assert hub.wait_exit(60) != 0
    finally:
        hub.stop()  # a hub that did start (the check missing) is not left running
    log = hub.log()
    assert "hardened_spawner refuses this configuration" in log, log[-2000:]
    assert f"HardenedDockerSpawner.admission_signature_trusted_root: the Sigstore trust root ({bad}) cannot be used" \
        in log, log[-2000:]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, keyless):
    config = policy_config(keyless) + f"c.HardenedDockerSpawner.allowed_images = {dict(keyless['refs'])!r}\n"
    hub = Hub(tmp_path_factory.mktemp("keyless-hub"), config).start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, hub.users)


def test_the_hub_spawns_the_trusted_identitys_image_and_refuses_another_subject(hub, dclient, keyless):
    events = hub.spawn_and_wait("ks-alice", {"image": "good"})
    assert events[-1].get("ready"), events[-1]
    (event,) = [e for e in hub.audit() if e["event"] == "admission" and e["user"] == "ks-alice"]
    assert event["decision"] == "admit" and TRUSTED in event["provenance"], event
    assert containers_of(dclient, "ks-alice")
    r = hub.spawn("ks-bob", {"image": "subject"})
    assert r.status_code in (201, 202), r.text
    last = hub.progress("ks-bob")[-1]
    assert last.get("failed") and "[provenance.untrusted-signer]" in last["message"], last
    assert containers_of(dclient, "ks-bob") == []
