"""Issue 5 end to end: image admission through a real hub and the check-image command.

One hub serves the module, with a policy that turns on every rule family:
allowed channels, a denied and a required package, a lock file generated
from the compliant image, and a report directory with Trivy reports for every
test image except "noreport" and "storm" ("cve" gets a critical CVE). The
test images come from tests/images (rig/test-images.sh).
"""

import asyncio
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import containers_of, run_in
from hubrig import REPO, Hub, remove_user_artifacts

from hardened_spawner.tools import cli
from hardened_spawner.admission import engine, facts, guard, layers
from hardened_spawner.admission.policy import Policy

pytestmark = [pytest.mark.docker, pytest.mark.hub]

NAMES = ["compliant", "root", "privkey", "sudo", "sshroot", "channel", "eolpython", "denied", "pip", "lock",
         "secret", "setuid", "symlinkssh", "cve", "noreport", "storm"]
IMAGES = {n: f"hardened-spawner/adm-{n}:test" for n in NAMES} | {"latest": "hardened-spawner/adm-compliant:latest"}
DENIED = {
    "root": "image.user-root", "privkey": "image.baked-private-key", "sudo": "sudo.interpreter-grant",
    "sshroot": "sshd.root-login", "channel": "conda.channel-not-allowed", "eolpython": "conda.python-eol",
    "denied": "conda.package-denied", "pip": "conda.pip-pollution", "lock": "conda.lock-mismatch",
    "secret": "image.env-secret", "setuid": "image.setuid-binary", "cve": "scan.severity-threshold",
    "noreport": "scan.report-missing", "latest": "image.tag-latest",
}
PROBE = "hardened-spawner.admission-probe"


def trivy(image_id, vulns=()):
    return {"SchemaVersion": 2, "ArtifactName": "test", "ArtifactType": "container_image",
            "Metadata": {"ImageID": image_id, "RepoDigests": []},
            "Results": [{"Target": "debian 12", "Vulnerabilities": list(vulns) or None}]}


CRITICAL = {"VulnerabilityID": "CVE-2024-99999", "PkgName": "openssl", "InstalledVersion": "3.0.15",
            "FixedVersion": "3.0.16", "Severity": "CRITICAL"}


def write_report(directory, image_id, vulns=()):
    path = directory / f"sha256-{image_id.split(':', 1)[1]}.trivy.json"
    path.write_text(json.dumps(trivy(image_id, vulns)))
    return path


def explicit_lock(dclient, image_id, path):
    """The compliant image's records as a `conda list --explicit --md5` file."""
    plan = facts.ReadPlan(site_packages=False)
    with ThreadPoolExecutor(4) as pool:
        async def read():
            loop = asyncio.get_running_loop()
            return await facts.read_facts(lambda fn, *a: loop.run_in_executor(pool, fn, dclient, *a), image_id, plan)

        inputs = engine.prepare(asyncio.run(read()), plan)
    path.write_text("# platform: linux-64\n@EXPLICIT\n" + "".join(f"{r.url}#{r.md5}\n" for r in inputs.records))
    return len(inputs.records)


@pytest.fixture(scope="module")
def images(dclient, image):
    subprocess.run(["bash", str(REPO / "rig/test-images.sh")], check=True, capture_output=True)
    return {name: dclient.inspect_image(ref) for name, ref in IMAGES.items()}


@pytest.fixture(scope="module")
def policy(tmp_path_factory, dclient, images):
    root = tmp_path_factory.mktemp("adm-policy")
    reports = root / "reports"
    reports.mkdir()
    for name, info in images.items():
        if name not in ("noreport", "storm", "latest"):
            write_report(reports, info["Id"], [CRITICAL] if name == "cve" else [])
    lock = root / "explicit.lock"
    assert explicit_lock(dclient, images["compliant"]["Id"], lock) > 50  # python + every dist in site-packages
    config = (
        f"c.HardenedDockerSpawner.allowed_images = {dict(IMAGES)!r}\n"
        "c.HardenedDockerSpawner.conda_allowed_channels = ['conda-forge']\n"
        "c.HardenedDockerSpawner.conda_denied_packages = ['pycrypto']\n"
        "c.HardenedDockerSpawner.conda_required_packages = ['jupyterhub >=6,<7', 'python >=3.11']\n"
        f"c.HardenedDockerSpawner.conda_lock_file = {str(lock)!r}\n"
        f"c.HardenedDockerSpawner.scan_report_dir = {str(reports)!r}\n"
        "c.HardenedDockerSpawner.scan_deny_severity = 'high'\n"
        "c.HardenedDockerSpawner.pip_index_url = 'https://pypi.example.org/simple'\n"
        # these two warn by default; this hub enforces them so their test images are denied
        "c.HardenedDockerSpawner.admission_rule_modes = {'image.setuid-binary': 'enforce', "
        "'conda.pip-pollution': 'enforce'}\n"
    )
    path = root / "adm_config.py"
    path.write_text(f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n" + config)
    return {"root": root, "reports": reports, "lock": lock, "config": config, "file": path}


WRITABLE_ROOT = """
def _writable_root_for_alice(spawner):  # the writable root's guard: files in the container, drift audited
    if spawner.user.name == "adm-alice":
        spawner.read_only_root = False


c.Spawner.pre_spawn_hook = _writable_root_for_alice
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, policy):
    hub = Hub(tmp_path_factory.mktemp("adm-hub"), policy["config"] + WRITABLE_ROOT).start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, hub.users)


def admissions(hub, user):
    return [e for e in hub.audit() if e["event"] == "admission" and e["user"] == user]


def probes(dclient, image=None):
    """Admission probe containers (of ``image`` only, when given: other test workers' reads
    share the daemon)."""
    found = dclient.containers(all=True, filters={"label": PROBE})
    if image is None:
        return found
    image_id = dclient.inspect_image(image)["Id"]
    return [c for c in found if c["ImageID"] == image_id]


class OnlyThese:
    """The daemon as :func:`facts.sweep_probes` sees it, holding only the probes and volumes a
    test made: other test workers' reads share the daemon and must not be swept."""

    def __init__(self, client, containers, volumes):
        self.client, self.ids, self.names = client, set(containers), set(volumes)

    def containers(self, **kwargs):
        return [c for c in self.client.containers(**kwargs) if c["Id"] in self.ids]

    def volumes(self, **kwargs):
        found = (self.client.volumes(**kwargs) or {}).get("Volumes") or []
        return {"Volumes": [v for v in found if v["Name"] in self.names]}

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_concurrent_spawns_of_a_new_image_compute_admission_once(hub, dclient):
    users = [f"adm-storm{i}" for i in range(8)]
    for user in users:
        hub.ensure_user(user)
    barrier = threading.Barrier(len(users))

    def spawn(user):
        barrier.wait()
        return hub.spawn(user, {"image": "storm"}).status_code

    with ThreadPoolExecutor(len(users)) as pool:
        assert set(pool.map(spawn, users)) <= {201, 202}
    for user in users:
        assert hub.progress(user)[-1].get("failed")
    events = [e for u in users for e in admissions(hub, u)]
    assert len(events) == len(users)
    assert [e["facts"] for e in events].count("computed") == 1, events
    assert [e["cache"] for e in events].count("computed") == 1, events
    assert {e["decision"] for e in events} == {"deny"}
    assert all(containers_of(dclient, u) == [] for u in users) and probes(dclient, IMAGES["storm"]) == []


@pytest.mark.parametrize("name", sorted(DENIED))
def test_violating_image_is_denied_with_its_rule(hub, dclient, name):
    user = f"adm-{name}"
    r = hub.spawn(user, {"image": name})
    assert r.status_code in (201, 202), r.text
    last = hub.progress(user)[-1]
    assert last.get("failed"), last
    message = last["message"]
    assert f"The image {IMAGES[name]} was refused by this hub's image policy" in message
    assert f"[{DENIED[name]}]" in message and "Fix: " in message
    assert hub.server(user) is None
    assert containers_of(dclient, user) == [] and probes(dclient, IMAGES[name]) == []
    (event,) = admissions(hub, user)
    assert event["decision"] == "deny" and DENIED[name] in {f["rule"] for f in event["findings"]}
    assert all(set(f) == {"rule", "severity", "action", "message", "remediation"} for f in event["findings"])
    denial = [e for e in hub.audit() if e["event"] == "spawn.denied" and e["user"] == user]
    assert denial and DENIED[name] in {f["rule"] for f in denial[0]["findings"]}
    assert denial[0]["ref"] == last["ref"] and denial[0]["status"] == 403


def test_compliant_image_spawns_with_the_conda_guard_and_drift_is_audited(hub, dclient):
    """A writable root (read_only_root = False for this user): the files go into the container."""
    user = "adm-alice"
    events = hub.spawn_and_wait(user, {"image": "compliant"})
    assert events[-1].get("ready"), events[-1]
    (event,) = admissions(hub, user)
    assert event["decision"] == "admit" and event["findings"] == []
    (container,) = containers_of(dclient, user)
    cid = container["Id"]

    def sh(cmd, user=""):
        return run_in(dclient, cid, cmd, user)

    code, out = sh("stat -c '%U %a %n' /etc/conda/.condarc /etc/pip.conf /opt/conda/pip.conf; cat /etc/conda/.condarc")
    assert code == 0, out
    assert out.splitlines()[:3] == ["root 644 /etc/conda/.condarc", "root 644 /etc/pip.conf", "root 644 /opt/conda/pip.conf"]
    assert "channels:  #!final" in out and '"conda-forge"' in out
    code, out = sh("echo 'channels: [evil]' >> /etc/conda/.condarc")  # the notebook user
    assert code != 0 and "Permission denied" in out
    code, out = sh("/opt/conda/bin/python -m pip config list")
    assert "global.index-url='https://pypi.example.org/simple'" in out, out
    # drift: something lands in the prefix behind the image's back
    code, _ = sh("touch /opt/conda/lib/python3.11/site-packages/drifted.pth", user="0")
    assert code == 0
    hub.stop_server(user)
    (drift,) = [e for e in hub.audit() if e["event"] == "conda.drift" and e["user"] == user]
    assert drift["added"] == 1 and drift["paths"] == ["added /opt/conda/lib/python3.11/site-packages/drifted.pth"]
    assert drift["source"] == "layers"  # the hub reads the daemon's layers: no docker diff at stop
    guard = [e for e in hub.audit() if e["event"] == "conda.guard" and e["user"] == user]
    assert guard[0]["files"] == ["/etc/conda/.condarc", "/etc/pip.conf", "/opt/conda/pip.conf"]


def test_the_guard_on_the_default_read_only_root_is_in_force_from_a_read_only_volume(hub, dclient):
    """The default read-only root: .condarc and pip.conf come from the server's policy volume, mounted
    read-only at /etc/conda; pip reads it through PIP_CONFIG_FILE over the user's own pip.conf; nobody in
    the container can change them; the volume goes with the server."""
    user = "adm-ro"
    events = hub.spawn_and_wait(user, {"image": "compliant"})
    assert events[-1].get("ready"), events[-1]
    (container,) = containers_of(dclient, user)
    cid = container["Id"]
    info = dclient.inspect_container(cid)
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    [policy] = [m for m in info["Mounts"] if m["Destination"] == "/etc/conda"]
    assert (policy["Type"], policy["RW"]) == ("volume", False), policy
    volume = policy["Name"]
    assert volume == "jupyter-adm-2dro-conda-policy"
    labels = dclient.inspect_volume(volume)["Labels"]
    assert labels["hardened-spawner.owner"] == user and labels["hardened-spawner.conda-policy"] == "jupyter-adm-2dro"
    assert "PIP_CONFIG_FILE=/etc/conda/pip.conf" in info["Config"]["Env"]

    def sh(cmd, user=""):
        return run_in(dclient, cid, cmd, user)

    code, out = sh("id -u; touch /hs-root-write 2>&1")  # the notebook user, as a terminal would (one stream, in order)
    assert code != 0 and out.split()[0] == "1000" and "Read-only file system" in out, out
    code, out = sh("ls -A /etc/conda; stat -c '%U %a %n' /etc/conda/.condarc /etc/conda/pip.conf; "
                   "cat /etc/conda/.condarc")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[:4] == [".condarc", "pip.conf", "root 644 /etc/conda/.condarc", "root 644 /etc/conda/pip.conf"], out
    assert "channels:  #!final" in out and "allowlist_channels:  #!final" in out and '"conda-forge"' in out
    for who in ("", "0"):  # the notebook user, and uid 0 without capabilities: a read-only mount for both
        code, out = sh("echo 'channels: [evil]' >> /etc/conda/.condarc; echo x > /etc/conda/pip.conf; "
                       "touch /etc/conda/condarc", user=who)
        assert code != 0 and out.count("cannot") == 3, (who, out)  # the user: 0644 root files, a read-only mount
        assert who == "" or out.count("Read-only file system") == 3, out  # uid 0 owns them: the mount says no
    # the user's own pip.conf, as a user would write it, is not read while the hub's exists
    code, out = sh("mkdir -p ~/.config/pip && printf '[global]\\nindex-url = https://evil.example/simple\\n' "
                   "> ~/.config/pip/pip.conf && /opt/conda/bin/python -m pip config list")
    assert code == 0, out
    assert "global.index-url='https://pypi.example.org/simple'" in out and "evil" not in out, out
    assert sh("/opt/conda/bin/python -m pip config debug")[1].count("/etc/conda/pip.conf, exists: True") == 1
    hub.stop_server(user)
    assert not dclient.volumes(filters={"name": volume})["Volumes"], "the policy volume goes with the server"
    guard = [e for e in hub.audit() if e["event"] == "conda.guard" and e["user"] == user]
    assert guard[0]["files"] == ["/etc/conda/.condarc", "/etc/conda/pip.conf"] and guard[0]["volume"] == volume
    assert not [e for e in hub.audit() if e["event"] == "conda.drift" and e["user"] == user]


def test_probes_left_by_a_hub_killed_mid_read_are_swept(dclient, images):
    """Probe containers with their mask volumes, as a read leaves them when the hub dies; and a
    mask volume whose container someone removed without its volumes."""
    import time

    def probe():
        container = facts._create(dclient, images["compliant"]["Id"], masks=["/opt/conda/lib/python3.11/site-packages/x"])
        return container, dclient.inspect_container(container)["Mounts"][0]["Name"]

    def volumes():
        return {v["Name"] for v in dclient.volumes()["Volumes"] or ()}

    (left, left_volume), (pruned, pruned_volume) = probe(), probe()
    dclient.remove_container(pruned)  # without v=True: its volume stays, dangling
    other = dclient.create_volume(labels={"hardened-spawner.test": "not-a-probe"})["Name"]
    mine = OnlyThese(dclient, [left, pruned], [left_volume, pruned_volume, other])
    try:
        assert facts.sweep_probes(mine, time.time()) == (0, 1)  # a read may still be using the container
        assert left in {c["Id"] for c in probes(dclient)} and left_volume in volumes()
        assert pruned_volume not in volumes()
        assert facts.sweep_probes(mine, time.time() + facts.STALE_PROBE_SECONDS + 60) == (1, 0)
        assert left not in {c["Id"] for c in probes(dclient)} and left_volume not in volumes()  # with its container
        assert other in volumes()
    finally:
        dclient.remove_volume(other)


def test_drift_from_the_upper_layer_is_what_docker_diff_says(dclient, images):
    """Added, changed, deleted files and a directory deleted and made again (opaque), read from the
    container's upper directory, against docker diff of the same container."""
    site = "/opt/conda/lib/python3.11/site-packages"
    script = (f"touch {site}/new.pth && mkdir -p {site}/newpkg/sub && touch {site}/newpkg/sub/m.py"
              f" && echo x >> /opt/conda/pyvenv.cfg && rm -rf {site}/six.py {site}/idna"
              f" && mkdir {site}/idna && touch {site}/idna/replaced.py")
    container = dclient.create_container(IMAGES["compliant"], ["sh", "-c", script], user="0",
                                         labels={"hardened-spawner.test": "drift"})["Id"]
    try:
        dclient.start(container)
        assert dclient.wait(container, timeout=60)["StatusCode"] == 0, dclient.logs(container)
        docker_diff = guard.drift(dclient.diff(container), "/opt/conda")
        from_layers = layers.container_changes(dclient.inspect_container(container), "/opt/conda")
        assert from_layers is not None, "the rig's hub reads the daemon's layers"
        drift = guard.drift(from_layers, "/opt/conda")
        assert sorted(drift.pop("paths")) == sorted(docker_diff.pop("paths")) and drift == docker_diff
        assert docker_diff["added"] >= 4 and docker_diff["changed"] == 1 and docker_diff["deleted"] >= 1, docker_diff
    finally:
        dclient.remove_container(container, force=True)


def test_a_new_report_counts_at_the_next_spawn(hub, policy, images):
    user = "adm-latereport"
    hub.spawn(user, {"image": "noreport"})
    assert "[scan.report-missing]" in hub.progress(user)[-1]["message"]
    path = write_report(policy["reports"], images["noreport"]["Id"], [CRITICAL])
    try:
        hub.spawn(user, {"image": "noreport"})
        message = hub.progress(user)[-1]["message"]
        assert "[scan.severity-threshold]" in message and "CVE-2024-99999" in message
        assert "[scan.report-missing]" not in message
        path.write_text("{this is not json")
        hub.spawn(user, {"image": "noreport"})
        message = hub.progress(user)[-1]["message"]
        assert "[scan.report-invalid]" in message and str(path) in message and "not JSON" in message
    finally:
        path.unlink()


def test_a_broken_lock_file_denies_with_the_file_named(hub, policy):
    user = "adm-brokenlock"
    good = policy["lock"].read_text()
    policy["lock"].write_text("@EXPLICIT\nhttps://example.org/not-a-package.zip\n")
    try:
        hub.spawn(user, {"image": "compliant"})
        message = hub.progress(user)[-1]["message"]
        assert "[conda.lock-invalid]" in message and str(policy["lock"]) in message
    finally:
        policy["lock"].write_text(good)


def test_audit_mode_warns_and_spawns(make_hub, dclient, images):
    user = "adm-audited"
    hub = make_hub(
        f"c.HardenedDockerSpawner.allowed_images = {{'root': {IMAGES['root']!r}}}\n"
        "c.HardenedDockerSpawner.admission_rule_modes = {'image.user-root': 'audit'}\n"
        "c.HardenedDockerSpawner.admission_read_layers = False\n", name="adm-audit-hub")  # the archive path
    events = hub.spawn_and_wait(user, {"image": "root"})
    assert events[-1].get("ready"), events[-1]
    assert any("Image policy warnings: [image.user-root] The image runs as root." in e.get("message", "") for e in events)
    (event,) = admissions(hub, user)
    assert event["decision"] == "admit"
    assert [(f["rule"], f["action"]) for f in event["findings"]] == [("image.user-root", "warn")]
    (container,) = containers_of(dclient, user)
    assert dclient.inspect_container(container["Id"])["Config"]["User"] == "1000:100"


@pytest.mark.parametrize("name", ["compliant", "pip", "setuid"])
def test_layer_listings_equal_archive_listings(dclient, images, name):
    """The overlay2 fast path sees what Docker's archive API shows (hardlinks are files)."""
    plan = engine.plan_for(Policy())
    info = images[name]
    dirs = layers.overlay_layers(info)
    assert dirs, "the rig's hub runs as root next to the daemon: its layers must be readable"

    def read(layer_dirs):
        with ThreadPoolExecutor(facts.THREADS) as pool:
            async def go():
                loop = asyncio.get_running_loop()
                return await facts.read_facts(lambda fn, *a: loop.run_in_executor(pool, fn, dclient, *a),
                                              info["Id"], plan, layer_dirs)
            return asyncio.run(go())

    archive, fast = read(None), read(dirs)
    site = "/opt/conda/lib/python3.11/site-packages"
    assert fast.children(site) == archive.children(site) and len(archive.children(site)) > 200

    def modes(f):
        return {p: (e.mode, "file" if e.type == "hardlink" else e.type)
                for root in plan.setuid_paths for p, e in f.under(root).items()}

    assert modes(fast) == modes(archive) and len(modes(archive)) > 300


# ---- the check-image command -----------------------------------------------------------
@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HS_HUB_STATE", str(tmp_path / "state"))  # jupyterhub_config.py makes its state dir


@pytest.mark.parametrize("name", sorted(DENIED) + ["compliant"])
def test_check_image_applies_the_hub_policy(policy, cli_env, capsys, name):
    code = cli.main(["check-image", IMAGES[name], "--config", str(policy["file"]), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"image", "digest", "admitted", "findings", "signature", "provenance", "sbom"} \
        and report["image"] == IMAGES[name]
    rules = {f["rule"] for f in report["findings"] if f["action"] == "deny"}
    if name == "compliant":
        assert (code, report["admitted"], report["findings"]) == (0, True, [])
    else:
        assert (code, report["admitted"]) == (1, False) and DENIED[name] in rules, report


def test_check_image_command_text_output_and_usage_errors(policy, tmp_path):
    def run(ref, config):
        return subprocess.run([sys.executable, "-m", "hardened_spawner.tools.cli", "check-image", ref, "--config", str(config)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HS_HUB_STATE": str(tmp_path / "state")})

    result = run(IMAGES["sudo"], policy["file"])
    assert result.returncode == 1
    assert "DENIED" in result.stdout and "DENY sudo.interpreter-grant [critical]" in result.stdout
    assert "fix: Remove the sudo rule" in result.stdout
    missing = run("hardened-spawner/adm-missing:test", policy["file"])
    assert missing.returncode == 2 and "is not on the Docker daemon" in missing.stderr
    broken = tmp_path / "broken.py"
    broken.write_text(policy["file"].read_text() + "c.HardenedDockerSpawner.conda_lock_file = '/nonexistent.lock'\n")
    bad = run(IMAGES["compliant"], broken)
    assert bad.returncode == 2 and "/nonexistent.lock: cannot read" in bad.stderr
    huge = run(IMAGES["symlinkssh"], policy["file"])  # .ssh -> /usr: refused, not read into memory
    assert huge.returncode == 2 and "/usr in the image holds more than 16 MiB of files to check" in huge.stderr
