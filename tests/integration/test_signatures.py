"""Issue 15 end to end: signed images through a real hub and check-image, on a real registry.

Images are pushed to the rig's docker-registry and signed as cosign signs with a
key (tests/signrig.py: openssl keys and signatures, skopeo pushes the
``sha256-<hex>.sig`` artifact). The hub trusts key "ci" for ``<registry>/hs/sig-*``.
"""

import json
import subprocess
import sys
import time

import docker
import pytest
import requests
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from conftest import containers_of
from hubrig import REPO, Hub, free_port, remove_user_artifacts

import signrig

pytestmark = [pytest.mark.docker, pytest.mark.hub]
OTHER_CONTENT = "hardened-spawner/adm-compliant:test"
REFUSED = {"unsigned": "image.signature-missing", "otherkey": "image.signature",
           "retag": "image.signature", "local": "image.signature-missing"}


def push(dclient, source, ref):
    repo, tag = ref.rsplit(":", 1)
    dclient.tag(source, repo, tag)
    for line in dclient.push(repo, tag, stream=True, decode=True):
        assert "error" not in line, line
    digest = next(d for d in dclient.inspect_image(ref)["RepoDigests"] if d.startswith(repo + "@")).split("@")[1]
    dclient.remove_image(ref)  # the hub must pull it from the registry
    return digest


@pytest.fixture(scope="module")
def signed(tmp_path_factory, dclient, image, registry):
    work = tmp_path_factory.mktemp("signing")
    ci, _ = trusted = signrig.key_pair(work, "ci")
    stranger, _ = signrig.key_pair(work, "stranger")
    refs = {name: f"{registry}/hs/sig-{name}:1" for name in ("signed", "unsigned", "otherkey", "retag", "local")}
    digests = {name: push(dclient, image, ref) for name, ref in refs.items()}
    repo = {name: ref.rsplit(":", 1)[0] for name, ref in refs.items()}
    signrig.sign(work, repo["signed"], digests["signed"], ci)
    signrig.sign(work, repo["otherkey"], digests["otherkey"], stranger)
    signrig.sign(work, repo["local"], digests["local"], ci)
    # retag: the signed tag is moved to other content and the signature is copied along
    signrig.sign(work, repo["retag"], digests["retag"], ci)
    moved = push(dclient, OTHER_CONTENT, refs["retag"])
    signrig.sign(work, repo["retag"], moved, ci, signed_digest=digests["retag"])
    # local: the registry holds signed content, but this host's tag names other content
    dclient.tag(OTHER_CONTENT, repo["local"], "1")
    return {"refs": refs, "digests": digests, "moved": moved, "key": trusted[1], "work": work, "registry": registry}


def policy_config(registry, key, prefix="sig-"):
    return (f"c.HardenedDockerSpawner.admission_signature_policy = "
            f"[{{'images': '{registry}/hs/{prefix}*', 'keys': [{str(key)!r}]}}]\n"
            f"c.HardenedDockerSpawner.admission_registry_plain_http = [{registry!r}]\n"
            "c.HardenedDockerSpawner.admission_registry_timeout = 3.0\n")


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, signed):
    config = policy_config(signed["registry"], signed["key"])
    config += f"c.HardenedDockerSpawner.allowed_images = {dict(signed['refs'])!r}\n"
    hub = Hub(tmp_path_factory.mktemp("sig-hub"), config).start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, hub.users)


def admissions(hub, user):
    return [e for e in hub.audit() if e["event"] == "admission" and e["user"] == user]


def test_a_signed_image_spawns_and_the_audit_names_signature_and_sbom(hub, dclient, signed):
    user = "sig-alice"
    events = hub.spawn_and_wait(user, {"image": "signed"})
    assert events[-1].get("ready"), events[-1]
    (event,) = admissions(hub, user)
    assert event["decision"] == "admit", event
    assert event["signature"] == f"{signed['digests']['signed']} signed by key {signed['key']}."
    assert event["sbom"].startswith("urn:uuid:")
    (spawn,) = [e for e in hub.audit() if e["event"] == "spawn" and e["user"] == user]
    assert spawn["sbom"] == event["sbom"]
    assert containers_of(dclient, user)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unsigned_foreign_key_and_retagged_images_are_refused(hub, dclient, signed, name):
    user = f"sig-{name}"
    r = hub.spawn(user, {"image": name})
    assert r.status_code in (201, 202), r.text
    last = hub.progress(user)[-1]
    assert last.get("failed") and f"[{REFUSED[name]}]" in last["message"], last
    assert containers_of(dclient, user) == []
    (event,) = admissions(hub, user)
    assert event["decision"] == "deny" and REFUSED[name] in {f["rule"] for f in event["findings"]}
    if name == "retag":
        assert f"made for {signed['digests']['retag']}, not for this content {signed['moved']}" in last["message"]
    if name == "otherkey":
        assert "a key this hub does not trust" in last["message"]


def check_image(config_file, ref, fmt="json"):
    proc = subprocess.run([sys.executable, "-m", "hardened_spawner.tools.cli", "check-image", ref,
                           "--config", str(config_file), "--format", fmt], capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_check_image_prints_the_signature_verdict(tmp_path, dclient, signed):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n"
                      + policy_config(signed["registry"], signed["key"]))
    for name, ref in signed["refs"].items():
        if name != "local":
            dclient.pull(ref)   # the registry's content (retag: the moved tag)
        code, out, err = check_image(config, ref)
        report = json.loads(out)
        rules = {f["rule"] for f in report["findings"] if f["action"] == "deny"}
        if name == "signed":
            assert (code, report["admitted"]) == (0, True), report
            assert report["signature"].endswith(f"signed by key {signed['key']}.")
        else:
            assert (code, report["admitted"]) == (1, False) and REFUSED[name] in rules, report
            assert report["signature"]
    code, out, _ = check_image(config, signed["refs"]["signed"], "text")
    assert code == 0 and f"  signature: {signed['digests']['signed']} signed by key" in out


def test_a_registry_that_is_down_fails_closed_even_after_an_admission(tmp_path, dclient, image, make_hub, signed):
    port = free_port()
    reg = f"127.0.0.1:{port}"
    (tmp_path / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/data\n"
        f"http:\n  addr: {reg}\nlog:\n  level: warn\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                if requests.get(f"http://{reg}/v2/", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        ref = f"{reg}/hs/sig-down:1"
        digest = push(dclient, image, ref)
        signrig.sign(signed["work"], ref.rsplit(":", 1)[0], digest, signed["work"] / "ci.key")
        dclient.pull(ref)  # present on the host: the hub will not need the registry to pull it
        hub = make_hub(policy_config(reg, signed["key"]) + f"c.HardenedDockerSpawner.image = {ref!r}\n")
        user = "sig-down"
        hub.users.add(user)
        assert hub.spawn_and_wait(user)[-1].get("ready")
        hub.stop_server(user)
    finally:
        proc.terminate()
        proc.wait(10)
    events = hub.spawn_and_wait(user)
    assert events[-1].get("failed"), events[-1]
    assert "[image.signature-unverifiable]" in events[-1]["message"]
    assert f"cannot reach the registry {reg}" in events[-1]["message"]
    first, second = admissions(hub, user)
    assert (first["decision"], second["decision"]) == ("admit", "deny")
    assert second["cache"] == "computed"  # the earlier admission did not answer for the outage
    with pytest.raises(docker.errors.APIError):
        dclient.pull(ref)  # the registry is really gone


def sbom_of(ref, tmp_path):
    out = tmp_path / "sbom.json"
    config = tmp_path / "sbom_config.py"
    config.write_text(f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n")
    proc = subprocess.run([sys.executable, "-m", "hardened_spawner.tools.cli", "sbom", ref, "--config", str(config),
                           "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, getattr(error, "data", error)
    return json.loads(text)


def test_sbom_command_writes_the_document_the_audit_line_names(hub, signed, tmp_path):
    (event,) = admissions(hub, "sig-alice")
    doc = sbom_of(signed["refs"]["signed"], tmp_path)
    assert doc["serialNumber"] == event["sbom"]
    purls = [c["purl"] for c in doc["components"]]
    assert any(p.startswith("pkg:deb/debian/openssh-server@") for p in purls), purls
    assert any(p.startswith("pkg:deb/debian/libssl3@") and "upstream=openssl" in p for p in purls)


def test_sbom_lists_conda_records_and_pip_distributions(tmp_path):
    doc = sbom_of("hardened-spawner/adm-pip:test", tmp_path)
    by_type = {}
    for c in doc["components"]:
        by_type.setdefault(c["purl"].split("/", 1)[0], []).append(c)
    python = next(c for c in by_type["pkg:conda"] if c["name"] == "python")
    assert "channel=conda.anaconda.org/conda-forge" in python["purl"] and "build=" in python["purl"]
    assert {h["alg"] for h in python["hashes"]} == {"MD5", "SHA-256"}
    assert by_type["pkg:pypi"] and by_type["pkg:deb"]
    assert doc["metadata"]["component"]["name"] == "docker.io/hardened-spawner/adm-pip"


def test_keyless_bundles_are_found_through_the_referrers_tag_and_must_verify(tmp_path, dclient, image, signed):
    """No Sigstore instance is reachable here, so no bundle can verify: this proves that bundles are
    found on a registry without the referrers API and that one that does not verify is refused."""
    registry = signed["registry"]
    ref = f"{registry}/hs/keyless-app:1"
    digest = push(dclient, image, ref)
    dclient.pull(ref)
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(
        f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n"
        f"c.HardenedDockerSpawner.admission_signature_policy = [{{'images': '{registry}/hs/keyless-*', "
        "'identities': [{'issuer': 'https://token.actions.githubusercontent.com', "
        "'subject': 'https://github.com/example/images/.github/workflows/build.yml@refs/heads/main'}]}]\n"
        f"c.HardenedDockerSpawner.admission_registry_plain_http = [{registry!r}]\n")
    code, out, _ = check_image(config, ref)
    assert code == 1 and "image.signature-missing" in {f["rule"] for f in json.loads(out)["findings"]}
    bundle = json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                         "verificationMaterial": {}, "dsseEnvelope": {}}).encode()
    signrig.attach_bundle(ref.rsplit(":", 1)[0], digest, bundle)
    code, out, _ = check_image(config, ref)
    report = json.loads(out)
    assert code == 1 and [f["rule"] for f in report["findings"] if f["action"] == "deny"] == ["image.signature"]
    assert "a Sigstore bundle that does not verify" in report["signature"], report
