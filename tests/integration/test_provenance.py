"""Issue 24: signed SLSA build provenance through check-image and a real hub, on a real registry.

Images are pushed to the rig's docker-registry and signed with key "ci" (tests/signrig.py);
their provenance is an in-toto statement built with sigstore's StatementBuilder and SLSA models,
signed with securesystemslib's DSSE and pushed to the ``sha256-<hex>.att`` tag in cosign's layout.
The hub trusts key "ci" for ``<registry>/hs/prov-*`` and accepts builder BUILDER (L3) and
SHARED (L1) from SOURCE's main branch at L3.
"""

import datetime
import hashlib
import json
import secrets
import subprocess
import sys
import time

import pytest
import requests
from conftest import containers_of
from hubrig import REPO, Hub, free_port, remove_user_artifacts
from test_signatures import OTHER_CONTENT, check_image, push

import signrig

pytestmark = [pytest.mark.docker, pytest.mark.hub]
BUILDER = "https://ci.example.org/builders/image-build@v3"
SHARED = "https://ci.example.org/builders/shared-runner"
SOURCE = "https://git.example.org/jupyter/images"
# image name -> the rule that refuses it (None: admitted)
CASES = {"good": None, "v02": None, "otherkey": "provenance.untrusted-signer",
         "builder": "provenance.builder-not-allowed", "source": "provenance.source-not-allowed",
         "level": "provenance.level-too-low", "subject": "provenance.missing", "none": "provenance.missing",
         "retag": "provenance.missing"}


def attest(work, repo, digest, key, builder=BUILDER, source=SOURCE, ref="refs/heads/main", subject=None,
           version="v1"):
    kind, predicate = signrig.provenance(builder, source, ref, version=version)
    envelope = signrig.envelope(signrig.statement(subject or digest, kind, predicate), key)
    signrig.attest(work, repo, digest, [envelope], kind)
    return envelope


def policy_config(registry, key):
    trust = [{"images": f"{registry}/hs/prov-*", "keys": [str(key)]}]
    prov = [{"images": f"{registry}/hs/prov-*", "builders": {BUILDER: 3, SHARED: 1},
             "sources": [f"{SOURCE}@refs/heads/main"], "min_level": 3}]
    return (f"c.HardenedDockerSpawner.admission_signature_policy = {trust!r}\n"
            f"c.HardenedDockerSpawner.admission_provenance_policy = {prov!r}\n"
            f"c.HardenedDockerSpawner.admission_registry_plain_http = [{registry!r}]\n"
            "c.HardenedDockerSpawner.admission_registry_timeout = 3.0\n")


def publish(work, dclient, image, registry, name, ci, stranger, other_digest):
    """Push ``image`` as ``<registry>/hs/prov-<name>:1``, sign it with ci and attest it as case ``name`` says."""
    ref = f"{registry}/hs/prov-{name}:1"
    repo = ref.rsplit(":", 1)[0]
    digest = push(dclient, image, ref)
    signrig.sign(work, repo, digest, ci)
    attests = {"good": {}, "v02": {"version": "v0.2"}, "otherkey": {"key": stranger},
               "builder": {"builder": "https://laptop.example.org/docker-build"},
               "source": {"source": "https://git.example.org/attacker/images"},
               "level": {"builder": SHARED}, "subject": {"subject": other_digest}, "retag": {}, "rotate": {},
               "withdraw": {}, "keyfile": {}}
    envelope = attest(work, repo, digest, **{"key": ci, **attests[name]}) if name in attests else None
    if name == "retag":  # the tag moves to other content; its signature and provenance are copied along
        moved = push(dclient, OTHER_CONTENT, ref)
        signrig.sign(work, repo, moved, ci, signed_digest=digest)
        attest(work, repo, moved, ci, subject=digest)
        digest = moved
    return ref, digest, envelope


@pytest.fixture(scope="module")
def published(tmp_path_factory, dclient, image, registry):
    work = tmp_path_factory.mktemp("provenance")
    ci, public = signrig.key_pair(work, "ci")
    stranger, _ = signrig.key_pair(work, "stranger")
    other_digest = push(dclient, OTHER_CONTENT, f"{registry}/hs/prov-elsewhere:1")
    refs, digests, envelopes = {}, {}, {}
    for name in [*CASES, "rotate", "withdraw", "keyfile"]:
        refs[name], digests[name], envelopes[name] = publish(work, dclient, image, registry, name, ci, stranger,
                                                             other_digest)
    vsa_key = work / "vsa.pem"  # the hub's own signing key, for its verification summaries
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(vsa_key)], check=True)
    vsa_key.chmod(0o600)
    vsa_pub = work / "vsa.pub"  # what a registry or CI gate holds
    subprocess.run(["openssl", "pkey", "-in", str(vsa_key), "-pubout", "-out", str(vsa_pub)], check=True)
    return {"refs": refs, "digests": digests, "envelopes": envelopes, "key": public, "ci": ci, "stranger": stranger,
            "work": work, "registry": registry, "other": other_digest, "vsa_key": vsa_key, "vsa_pub": vsa_pub}


def test_check_image_admits_or_refuses_each_case_with_its_rule(tmp_path, dclient, published):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n"
                      + policy_config(published["registry"], published["key"]))
    for name, refused in CASES.items():
        ref = published["refs"][name]
        dclient.pull(ref)
        code, out, err = check_image(config, ref)
        report = json.loads(out)
        denied = {f["rule"] for f in report["findings"] if f["action"] == "deny"}
        if refused is None:
            assert (code, report["admitted"]) == (0, True), (name, report)
            assert report["provenance"] == (f"{published['digests'][name]}: SLSA provenance signed by "
                                            f"{published['key']}, built by {BUILDER} (SLSA Build L3).")
            continue
        assert (code, report["admitted"]) == (1, False), (name, report)
        provenance_rules = {r for r in denied if r.startswith("provenance.")}
        assert provenance_rules == {refused}, (name, report)
        message = next(f["message"] for f in report["findings"] if f["rule"] == refused)
        if name == "subject":
            assert f"made for {published['other']}, not for {published['digests'][name]}" in message
        if name == "retag":
            assert "made for " in message and published["digests"][name] in message
            assert "image.signature" in denied  # its copied signature names the old digest too
        else:
            assert "image.signature" not in denied, (name, report)  # signed by ci: only the provenance fails
        if name == "otherkey":
            assert "signed by a key the trust policy does not name" in message
    code, out, _ = check_image(config, published["refs"]["good"], "text")
    assert code == 0 and f"  provenance: {published['digests']['good']}: SLSA provenance signed by" in out


def test_check_image_in_audit_mode_warns_and_admits(tmp_path, dclient, published):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n"
                      + policy_config(published["registry"], published["key"])
                      + "c.HardenedDockerSpawner.admission_rule_modes = {'provenance.builder-not-allowed': 'audit'}\n")
    dclient.pull(published["refs"]["builder"])
    code, out, _ = check_image(config, published["refs"]["builder"])
    report = json.loads(out)
    assert (code, report["admitted"]) == (0, True), report
    assert [(f["rule"], f["action"]) for f in report["findings"] if f["rule"].startswith("provenance.")] \
        == [("provenance.builder-not-allowed", "warn")]
    assert not [f for f in report["findings"] if f["action"] == "deny"], report


# ---- item 4: the hub's signed verification summary (SLSA VSA) ------------------------------------
VERIFIER = "https://hub.test.example/"
VSA_READER, BYSTANDER = secrets.token_hex(16), secrets.token_hex(16)  # services' tokens: with the scope, without


def vsa_config(key):
    return (f"c.HardenedDockerSpawner.admission_vsa_key_file = {str(key)!r}\n"
            f"c.HardenedDockerSpawner.admission_vsa_verifier_id = {VERIFIER!r}\n")


def verified_summary(body, public_pem):
    """The statement of a VSA envelope after securesystemslib's own DSSE verification with the public key."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    envelope = Envelope.from_dict(json.loads(body))
    envelope.verify([SSlibKey.from_crypto(load_pem_public_key(public_pem.read_bytes()))], 1)
    assert envelope.payload_type == "application/vnd.in-toto+json"
    statement = json.loads(envelope.payload)
    assert statement["predicateType"] == "https://slsa.dev/verification_summary/v1"
    assert statement["predicate"]["verifier"] == {"id": VERIFIER}
    return statement


def check_attest(config, ref):
    proc = subprocess.run([sys.executable, "-m", "hardened_spawner.tools.cli", "check-image", ref, "--config",
                           str(config), "--attest"], capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def summary(hub, uri, token):
    return requests.get(f"{hub.url}{uri}", headers={"Authorization": f"token {token}"} if token else {}, timeout=30)


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, published):
    config = policy_config(published["registry"], published["key"]) + vsa_config(published["vsa_key"])
    config += f"c.HardenedDockerSpawner.allowed_images = {dict(published['refs'])!r}\n"
    config += (f"c.JupyterHub.services.extend([{{'name': 'ci-gate', 'api_token': {VSA_READER!r}}}, "
               f"{{'name': 'bystander', 'api_token': {BYSTANDER!r}}}])\n"
               "c.JupyterHub.load_roles.append({'name': 'vsa-readers', 'services': ['ci-gate'], "
               "'scopes': ['custom:hardened-spawner:read-vsa']})\n")
    hub = Hub(tmp_path_factory.mktemp("prov-hub"), config).start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, hub.users)


def admissions(hub, user):
    return [e for e in hub.audit() if e["event"] == "admission" and e["user"] == user]


def admitted_once(hub, user, image):
    """``user`` spawns ``image`` (admitted) and stops, so the next spawn meets a cached admission."""
    hub.users.add(user)
    assert hub.spawn_and_wait(user, {"image": image})[-1].get("ready")
    hub.stop_server(user)


def assert_refused_despite_the_cache(hub, dclient, user, image, rule):
    """The next spawn of ``image`` is refused with ``rule``, decided afresh (the earlier admission did not
    answer for the changed attestation), and nothing runs."""
    events = hub.spawn_and_wait(user, {"image": image})
    assert events[-1].get("failed") and f"[{rule}]" in events[-1]["message"], events[-1]
    first, second = admissions(hub, user)
    assert (first["decision"], second["decision"], second["cache"]) == ("admit", "deny", "computed")
    assert containers_of(dclient, user) == []


def test_the_hub_spawns_an_image_with_trusted_provenance_and_audits_it(hub, dclient, published):
    user = "prov-alice"
    events = hub.spawn_and_wait(user, {"image": "good"})
    assert events[-1].get("ready"), events[-1]
    (event,) = admissions(hub, user)
    assert event["decision"] == "admit", event
    assert event["provenance"].startswith(f"{published['digests']['good']}: SLSA provenance signed by")
    assert containers_of(dclient, user)
    admin = requests.Session()  # the hub's admin, logged in as a browser would be (DummyAuthenticator)
    admin.get(f"{hub.url}/hub/login", timeout=30)
    admin.post(f"{hub.url}/hub/login", timeout=30, data={"username": "admin", "password": "test-password",
                                                         "_xsrf": admin.cookies.get("_xsrf", "")})
    page = admin.get(f"{hub.url}/hub/operations", timeout=30)
    assert page.status_code == 200 and "hs-verdicts" in page.text, page.text[:500]
    row = next(r for r in page.text.split("<tr class=\"hs-verdict")[1:] if published["refs"]["good"] in r)
    assert f'<td class="hs-provenance">{event["provenance"]}</td>' in row.split("</tr>")[0]


def test_a_replaced_attestation_counts_at_the_next_spawn(hub, dclient, published):
    admitted_once(hub, "prov-rotate", "rotate")
    repo = published["refs"]["rotate"].rsplit(":", 1)[0]
    attest(published["work"], repo, published["digests"]["rotate"], published["stranger"])  # replaces the .att tag
    assert_refused_despite_the_cache(hub, dclient, "prov-rotate", "rotate", "provenance.untrusted-signer")


def test_a_withdrawn_attestation_counts_at_the_next_spawn(hub, dclient, published):
    """The registry's .att manifest deleted after an admission: the cached admission does not answer."""
    admitted_once(hub, "prov-withdraw", "withdraw")
    repo = published["refs"]["withdraw"].rsplit(":", 1)[0].split("/", 1)[1]
    tag = published["digests"]["withdraw"].replace(":", "-") + ".att"
    base = f"http://{published['registry']}/v2/{repo}/manifests"
    head = requests.head(f"{base}/{tag}", timeout=30,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert head.status_code == 200, head.status_code
    gone = requests.delete(f"{base}/{head.headers['Docker-Content-Digest']}", timeout=30)
    assert gone.status_code == 202, gone.text
    assert requests.head(f"{base}/{tag}", timeout=30).status_code == 404
    assert_refused_despite_the_cache(hub, dclient, "prov-withdraw", "withdraw", "provenance.missing")


def test_a_trusted_key_file_that_cannot_be_read_fails_closed(hub, dclient, published):
    """The trust root of key-based signing is the public key file, read at every spawn: gone, nothing runs."""
    user = "prov-keyfile"
    hub.users.add(user)
    assert hub.spawn_and_wait(user, {"image": "keyfile"})[-1].get("ready")
    hub.stop_server(user)
    key, aside = published["key"], published["key"].with_suffix(".aside")
    key.rename(aside)
    try:
        events = hub.spawn_and_wait(user, {"image": "keyfile"})
    finally:
        aside.rename(key)
    assert events[-1].get("failed"), events[-1]
    first, second = admissions(hub, user)
    assert (first["decision"], second["decision"], second["cache"]) == ("admit", "deny", "computed")
    denied = {f["rule"] for f in second["findings"] if f["action"] == "deny"}
    assert {"image.signature", "provenance.untrusted-signer"} <= denied, second["findings"]
    assert str(key) in next(f["message"] for f in second["findings"] if f["rule"] == "image.signature")
    assert containers_of(dclient, user) == []


@pytest.mark.parametrize("name", ["builder", "source", "subject"])
def test_the_hub_refuses_provenance_the_policy_does_not_accept(hub, dclient, published, name):
    user = f"prov-{name}"
    r = hub.spawn(user, {"image": name})
    assert r.status_code in (201, 202), r.text
    last = hub.progress(user)[-1]
    assert last.get("failed") and f"[{CASES[name]}]" in last["message"], last
    assert containers_of(dclient, user) == []
    (event,) = admissions(hub, user)
    assert event["decision"] == "deny" and CASES[name] in {f["rule"] for f in event["findings"]}
    assert event["vsa"]["result"] == "FAILED"  # a refusal is summarised and signed too
    r = summary(hub, event["vsa"]["uri"], VSA_READER)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == event["vsa"]["sha256"], r.text
    statement = verified_summary(r.content, published["vsa_pub"])
    assert statement["subject"][0]["digest"] == {"sha256": published["digests"][name].split(":", 1)[1]}
    assert (statement["predicate"]["verificationResult"], statement["predicate"]["verifiedLevels"]) \
        == ("FAILED", ["FAILED"])


def test_the_hub_signs_a_summary_of_the_image_it_admitted_and_serves_it_to_callers_with_the_scope(
        hub, tmp_path, dclient, published):
    user = "vsa-alice"
    assert hub.spawn_and_wait(user, {"image": "good"})[-1].get("ready")
    (event,) = admissions(hub, user)
    name, digest = published["refs"]["good"].rsplit(":", 1)[0], published["digests"]["good"]
    assert event["vsa"]["result"] == "PASSED"
    assert event["vsa"]["uri"] == f"/hub/api/hardened-spawner/vsa/{name}@{digest}"
    r = summary(hub, event["vsa"]["uri"], VSA_READER)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/vnd.dsse.envelope.v1+json", r.text
    assert hashlib.sha256(r.content).hexdigest() == event["vsa"]["sha256"]
    statement = verified_summary(r.content, published["vsa_pub"])
    assert statement["subject"] == [{"name": name, "digest": {"sha256": digest.split(":", 1)[1]}}]
    predicate = statement["predicate"]
    assert (predicate["verificationResult"], predicate["verifiedLevels"]) == ("PASSED", ["SLSA_BUILD_LEVEL_3"])
    assert predicate["resourceUri"] == f"{name}@{digest}"
    assert predicate["inputAttestations"] == [{
        "uri": f"{name}:sha256-{digest.split(':', 1)[1]}.att",
        "digest": {"sha256": hashlib.sha256(published["envelopes"]["good"]).hexdigest()}}]
    # check-image --attest on the same policy states the same policy digest
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n"
                      + policy_config(published["registry"], published["key"]) + vsa_config(published["vsa_key"]))
    code, out, err = check_attest(config, published["refs"]["good"])
    assert code == 0, err
    assert verified_summary(out.encode(), published["vsa_pub"])["predicate"]["policy"] == predicate["policy"]

    assert summary(hub, event["vsa"]["uri"], hub.token).status_code == 200  # the hub's admin (admin-ui)
    assert summary(hub, f"/hub/api/hardened-spawner/vsa/{digest}", VSA_READER).status_code == 200  # any repository
    made = hub.api("POST", f"/users/{user}/tokens", json={"note": "vsa"})
    assert made.status_code == 201, made.text
    for token in (BYSTANDER, made.json()["token"], None):  # another service, the user who ran it, nobody
        refused = summary(hub, event["vsa"]["uri"], token)
        assert refused.status_code == 403 and "BEGIN" not in refused.text and "payload" not in refused.text, refused.text
    never = summary(hub, f"/hub/api/hardened-spawner/vsa/{name}@sha256:{'0' * 64}", VSA_READER)
    assert never.status_code == 404 and "has not decided on" in never.json()["message"], never.text

    admin = requests.Session()  # the operations page links it
    admin.get(f"{hub.url}/hub/login", timeout=30)
    admin.post(f"{hub.url}/hub/login", timeout=30, data={"username": "admin", "password": "test-password",
                                                         "_xsrf": admin.cookies.get("_xsrf", "")})
    page = admin.get(f"{hub.url}/hub/operations", timeout=30)
    row = next(r for r in page.text.split("<tr class=\"hs-verdict")[1:] if published["refs"]["good"] in r)
    assert f'<td class="hs-vsa"><a href="{event["vsa"]["uri"]}"' in row.split("</tr>")[0], row
    again = admin.post(f"{hub.url}/hub/operations/recheck", timeout=120, allow_redirects=False,
                       data={"image": published["refs"]["good"], "_xsrf": admin.cookies.get("_xsrf", "")})
    assert again.status_code == 303, again.text
    recheck = [e for e in hub.audit() if e["event"] == "admission" and e.get("trigger") == "recheck"][-1]
    assert recheck["vsa"]["result"] == "PASSED" and recheck["vsa"]["uri"] == event["vsa"]["uri"], recheck
    assert hashlib.sha256(summary(hub, event["vsa"]["uri"], VSA_READER).content).hexdigest() \
        == recheck["vsa"]["sha256"] != event["vsa"]["sha256"]  # the endpoint serves the latest decision's


def test_check_image_attest_prints_a_signed_summary_passed_or_failed(tmp_path, dclient, published):
    config = tmp_path / "jupyterhub_config.py"
    base = f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n" + policy_config(published["registry"],
                                                                                       published["key"])
    config.write_text(base + vsa_config(published["vsa_key"]))
    for name, result, levels in (("v02", "PASSED", ["SLSA_BUILD_LEVEL_3"]), ("builder", "FAILED", ["FAILED"])):
        dclient.pull(published["refs"][name])
        code, out, err = check_attest(config, published["refs"][name])
        assert code == (0 if result == "PASSED" else 1), err
        statement = verified_summary(out.encode(), published["vsa_pub"])
        assert statement["subject"][0]["digest"] == {"sha256": published["digests"][name].split(":", 1)[1]}
        assert (statement["predicate"]["verificationResult"], statement["predicate"]["verifiedLevels"]) \
            == (result, levels)
    config.write_text(base)
    code, out, err = check_attest(config, published["refs"]["v02"])
    assert (code, out) == (2, "") and "--attest signs with the hub's key: set admission_vsa_key_file" in err


def test_a_registry_that_is_down_fails_closed(tmp_path, dclient, image, published):
    port = free_port()
    reg = f"127.0.0.1:{port}"
    (tmp_path / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/data\n"
        f"http:\n  addr: {reg}\nlog:\n  level: warn\n")
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n" + policy_config(reg, published["key"]))
    proc = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                if requests.get(f"http://{reg}/v2/", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        ref, _, _ = publish(published["work"], dclient, image, reg, "good", published["ci"], None, None)
        dclient.pull(ref)  # present on the host: only the provenance needs the registry
        code, out, _ = check_image(config, ref)
        assert (code, json.loads(out)["admitted"]) == (0, True), out
    finally:
        proc.terminate()
        proc.wait(10)
    code, out, _ = check_image(config, ref)
    report = json.loads(out)
    denied = {f["rule"] for f in report["findings"] if f["action"] == "deny"}
    assert code == 1 and {"provenance.unverifiable", "image.signature-unverifiable"} <= denied, report
    message = next(f["message"] for f in report["findings"] if f["rule"] == "provenance.unverifiable")
    assert f"cannot reach the registry {reg}" in message


# ---- item 3: signed scan attestations in place of report files ---------------------------------
SCANS = {"fresh": None, "sbom": None, "vulnerable": "scan.severity-threshold", "old": "scan.report-stale",
         "otherkey": "scan.report-missing", "unscanned": "scan.report-missing"}


def scan_envelope(digest, key, days_ago, vulns=(), sbom=False):
    made = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days_ago)
    if sbom:
        kind, predicate = "https://cyclonedx.org/bom", signrig.cyclonedx(made, vulns)
    else:
        kind = "https://cosign.sigstore.dev/attestation/vuln/v1"
        predicate = signrig.vuln_predicate(signrig.cyclonedx(made, vulns), made)
    return kind, signrig.envelope(signrig.statement(digest, kind, predicate), key)


@pytest.fixture(scope="module")
def scanned(dclient, image, published):
    work, registry, ci = published["work"], published["registry"], published["ci"]
    made = {"fresh": {"days_ago": 1, "vulns": [("CVE-2024-2", "low")]},
            "sbom": {"days_ago": 0, "vulns": [("CVE-2024-3", "medium")], "sbom": True},
            "vulnerable": {"days_ago": 0, "vulns": [("CVE-2024-1", "critical")]},
            "old": {"days_ago": 10}, "otherkey": {"days_ago": 0, "key": published["stranger"]}}
    refs = {}
    for name in SCANS:
        refs[name] = f"{registry}/hs/scan-{name}:1"
        digest = push(dclient, image, refs[name])
        repo = refs[name].rsplit(":", 1)[0]
        signrig.sign(work, repo, digest, ci)
        if name in made:
            kind, envelope = scan_envelope(digest, **{"key": ci, **made[name]})
            signrig.attest(work, repo, digest, [envelope], kind)
    return refs


def test_check_image_judges_signed_scan_attestations(tmp_path, dclient, published, scanned):
    registry = published["registry"]
    trust = [{"images": f"{registry}/hs/scan-*", "keys": [str(published["key"])]}]
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n"
                      f"c.HardenedDockerSpawner.admission_signature_policy = {trust!r}\n"
                      f"c.HardenedDockerSpawner.admission_registry_plain_http = [{registry!r}]\n"
                      "c.HardenedDockerSpawner.scan_attestation_max_age_days = 7\n"
                      "c.HardenedDockerSpawner.scan_deny_severity = 'high'\n")
    for name, refused in SCANS.items():
        dclient.pull(scanned[name])
        code, out, _ = check_image(config, scanned[name])
        report = json.loads(out)
        denied = {f["rule"] for f in report["findings"] if f["action"] == "deny"}
        if refused is None:
            assert (code, report["admitted"]) == (0, True), (name, report)
            continue
        assert (code, denied) == (1, {refused}), (name, report)
        message = next(f["message"] for f in report["findings"] if f["rule"] == refused)
        says = {"vulnerable": "CVE-2024-1 (critical) in openssl 3.0.11", "old": "10 days ago",
                "otherkey": "signed by a key the trust policy does not name",
                "unscanned": "no signed scan attestation of"}[name]
        assert says in message, (name, message)
