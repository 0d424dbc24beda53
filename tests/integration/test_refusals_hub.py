"""What the hub answers when it says no, through a real hub on the real daemon (issue 17).

For each refusal kind a hub can meet here: the REST status and JSON body
``{status, reason, message, findings, ref}`` (refused before
``slow_spawn_timeout``), the same fields on the progress stream's failure
event (refused after it), the ``spawn.denied`` audit line with the same
reference id, and the hub log: one WARNING line naming that reference id and
no traceback, while a genuine crash still logs its traceback.
"""

import re
import time

import pytest

from hubrig import IMAGE, Hub, remove_user_artifacts

pytestmark = [pytest.mark.docker, pytest.mark.hub]

UNTRUSTED = "untrusted.example/notebook:latest"
CONFIG = f"""
c.JupyterHub.allow_named_servers = True
c.JupyterHub.tornado_settings = {{'slow_spawn_timeout': SLOW}}
c.HardenedDockerSpawner.pull_policy = "never"
c.HardenedDockerSpawner.profiles = [
    {{"slug": "cpu", "display_name": "CPU", "cpu_limit": 1, "mem_limit": "1G", "default": True}},
    {{"slug": "gpu", "display_name": "One GPU", "cpu_limit": 1, "mem_limit": "1G", "gpus": 1}},
    {{"slug": "staff", "display_name": "Staff", "cpu_limit": 1, "mem_limit": "1G", "groups": ["staff"]}},
]
c.HardenedDockerSpawner.gpu_ids = ["GPU-refusals-SLOW"]
c.HardenedDockerSpawner.max_gpus_per_user = 1
c.HardenedDockerSpawner.allowed_images = {{
    "default": "{IMAGE}", "untrusted": "{UNTRUSTED}", "absent": "hardened-spawner/absent:1"}}
c.HardenedDockerSpawner.admission_image_allowlist = ["hardened-spawner/*"]


def _privileged_for_one_user(spawner):  # evaluated at spawn time: the config check cannot see it
    return {{"privileged": True}} if spawner.user.name == "ref-unsafe" else {{}}


def _a_bug(spawner):
    if spawner.user.name == "ref-crash":
        raise RuntimeError("a bug in a config callable")
    return {{}}


c.HardenedDockerSpawner.extra_host_config = _privileged_for_one_user
c.HardenedDockerSpawner.extra_create_kwargs = _a_bug
"""
USERS = ["ref-bad", "ref-staff", "ref-evil", "ref-untrusted", "ref-absent", "ref-unsafe", "ref-keys", "ref-gpu",
         "ref-other", "ref-crash", "ref-late", "ref-late-gpu"]


@pytest.fixture(scope="module")
def untrusted(dclient, image):
    """The single-user image under a name the admission allowlist refuses, with a :latest tag."""
    dclient.tag(image, "untrusted.example/notebook", "latest")
    yield UNTRUSTED
    dclient.remove_image(UNTRUSTED)


def start_hub(tmp_path_factory, name, slow):
    hub = Hub(tmp_path_factory.mktemp(name), CONFIG.replace("SLOW", str(slow)))
    hub.users.update(USERS)
    keys = hub.state / "ssh-keys" / "ref-keys" / "authorized_keys"
    keys.mkdir(parents=True)  # a directory where the file should be: the key store cannot read it
    return hub.start()


@pytest.fixture(scope="module")
def hub(tmp_path_factory, untrusted, dclient):
    """Refusals answer the REST request itself (as in production: slow_spawn_timeout 10 s)."""
    hub = start_hub(tmp_path_factory, "refusals-hub", 10)
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, USERS)


@pytest.fixture(scope="module")
def late_hub(tmp_path_factory, untrusted, dclient):
    """Every spawn answers 202 at once; refusals arrive on the progress stream."""
    hub = start_hub(tmp_path_factory, "refusals-late-hub", 0)
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, USERS)


def log_lines(hub, ref):
    return [line for line in hub.log().splitlines() if f"[ref {ref}]" in line]


def denial(hub, ref):
    lines = [e for e in hub.audit() if e["event"] == "spawn.denied" and e.get("ref") == ref]
    assert len(lines) == 1, lines
    return lines[0]


def check_refusal(hub, body, reason, status, user, server=""):
    """The body's fields, its audit line, and its one WARNING line in the hub log."""
    assert set(body) == {"status", "reason", "message", "findings", "ref"}, body
    assert (body["status"], body["reason"]) == (status, reason), body
    assert re.fullmatch(r"[2-9A-Z]{4}-[2-9A-Z]{4}", body["ref"])
    assert body["message"].endswith(f"quote reference {body['ref']}: it finds this refusal in the audit log.")
    line = denial(hub, body["ref"])
    assert (line["user"], line["reason"], line["status"]) == (user, reason, status)
    assert line["findings"] == body["findings"]
    # one WARNING line carries the reference id: JupyterHub's "Not starting" line, downgraded, no traceback
    [logged] = log_lines(hub, body["ref"])
    assert logged.startswith("[W ") and f"Not starting {user}'s server" in logged, logged
    assert hub.server(user, server) is None or not hub.server(user, server).get("ready")


REST = [
    # user, options, reason, status, words the user reads
    ("ref-bad", {"cpu_limit": 8}, "bad-options", 400, "'cpu_limit' cannot be set in the server options"),
    ("ref-staff", {"profile": "staff"}, "not-entitled", 403, "You may not use profile 'staff'"),
    ("ref-evil", {"image": "evil/miner:1"}, "image-not-allowed", 403, "Image 'evil/miner:1' is not allowed here"),
    ("ref-untrusted", {"image": "untrusted"}, "image-denied", 403,
     f"The image {UNTRUSTED} was refused by this hub's image policy."),
    ("ref-absent", {"image": "absent"}, "image-missing", 503, "is not on this Docker host"),
    ("ref-unsafe", {}, "unsafe-config", 503, "The hub's configuration is unsafe"),
    ("ref-keys", {}, "ssh-key-store", 503, "Your SSH keys could not be read from the file key store"),
]


@pytest.mark.parametrize("user, options, reason, status, words", REST, ids=[r[2] for r in REST])
def test_rest_answers_each_refusal_with_its_status_reason_findings_and_reference(hub, user, options, reason,
                                                                                  status, words):
    r = hub.spawn(user, options)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    check_refusal(hub, body, reason, status, user)
    assert words in body["message"]
    if reason == "image-denied":
        rules = {f["rule"]: f for f in body["findings"]}
        assert {"image.not-allowlisted", "image.tag-latest"} <= set(rules), rules
        assert all(set(f) == {"rule", "severity", "action", "message", "remediation"} for f in rules.values())
        assert f"- [image.not-allowlisted] {rules['image.not-allowlisted']['message']}" in body["message"]
    if reason == "unsafe-config":
        assert body["findings"][0]["rule"].endswith("extra_host_config['privileged']")


def test_gpu_quota_is_403_and_gpu_busy_is_409(hub):
    hub.spawn_and_wait("ref-gpu", {"profile": "gpu"})
    r = hub.spawn("ref-gpu", {"profile": "gpu"}, server="second")
    assert r.status_code == 403, r.text
    check_refusal(hub, r.json(), "gpu-quota", 403, "ref-gpu", server="second")
    assert "You already hold 1 GPU(s)" in r.json()["message"]
    r = hub.spawn("ref-other", {"profile": "gpu"})
    assert r.status_code == 409, r.text
    check_refusal(hub, r.json(), "gpu-busy", 409, "ref-other")
    assert "No GPU is free for profile 'gpu'" in r.json()["message"] and "Pick 'cpu'" in r.json()["message"]
    hub.stop_server("ref-gpu")


def test_no_traceback_for_refusals_and_a_crash_keeps_its_traceback(hub):
    """Runs after the refusals above (file order): none of them logged a traceback."""
    assert "Traceback" not in hub.log()
    refs = [e["ref"] for e in hub.audit() if e["event"] == "spawn.denied"]
    assert len(refs) >= len(REST) + 2
    r = hub.spawn("ref-crash", {})
    assert r.status_code == 500, r.text
    assert set(r.json()) == {"status", "message"}  # JupyterHub's own answer: a crash is not a refusal
    deadline = time.monotonic() + 10
    while "RuntimeError: a bug in a config callable" not in hub.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = hub.log()
    assert "Traceback" in log and "RuntimeError: a bug in a config callable" in log
    assert re.search(r"^\[E .*Unhandled error starting ref-crash's server", log, re.M)
    assert not [e for e in hub.audit() if e["event"] == "spawn.denied" and e["user"] == "ref-crash"]


LATE = [  # refusals from inside Spawner.start (a refusal of the options themselves answers even at 0 s)
    ("ref-late", {"image": "untrusted"}, "image-denied", 403),
    ("ref-keys", {}, "ssh-key-store", 503),
]


@pytest.mark.parametrize("user, options, reason, status", LATE, ids=[r[2] for r in LATE])
def test_progress_failure_event_carries_the_refusal(late_hub, user, options, reason, status):
    r = late_hub.spawn(user, options)
    assert r.status_code == 202, r.text
    event = late_hub.progress(user)[-1]
    assert event["failed"] and event["progress"] == 100
    assert event["message"].startswith("Spawn failed: ")
    body = {k: event[k] for k in ("status", "reason", "findings", "ref")}
    check_refusal(late_hub, {**body, "message": event["message"]}, reason, status, user)
    assert f'<strong class="hs-ref">{event["ref"]}</strong>' in event["html_message"]
    if reason == "image-denied":
        assert '<table class="table table-sm hs-findings">' in event["html_message"]
        assert "<code>image.not-allowlisted</code>" in event["html_message"]
    assert "Traceback" not in late_hub.log()
