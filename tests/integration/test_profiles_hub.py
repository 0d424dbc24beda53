"""Issue 4 end to end: profiles gated by hub groups, one GPU per server, OOM deaths told in words.

One hub for the module: three profiles (a default, a tiny one, a GPU one for
the group gpu-users) and two GPU ids on the rig's daemon, whose stand-in
NVIDIA hook makes Docker's real ``nvidia`` device-request path run.
"""

import datetime
import html
import re
import time

import docker
import pytest
import requests

from conftest import containers_of
from hubrig import Hub, remove_user_artifacts

from hardened_spawner.decisions import oom

pytestmark = [pytest.mark.docker, pytest.mark.hub]

# The hog waits for /tmp/hog, then makes the server process itself use 400 MiB.
HOG = (
    "import os, sys, threading, time\n"
    "from jupyterhub.singleuser import main\n"
    "def hog():\n"
    "    while not os.path.exists('/tmp/hog'):\n"
    "        time.sleep(0.2)\n"
    "    globals()['ballast'] = bytearray(400 * 2**20)\n"
    "threading.Thread(target=hog, daemon=True).start()\n"
    "sys.exit(main())\n"
)
EXTRA = f"""
c.JupyterHub.tornado_settings = {{'slow_spawn_timeout': 10}}  # refusals come back as HTTP 400
c.Spawner.poll_interval = 2
c.JupyterHub.allow_named_servers = True
c.HardenedDockerSpawner.gpu_ids = ['0', '1']
c.HardenedDockerSpawner.max_gpus_per_user = 1
c.HardenedDockerSpawner.profiles = [
    {{'slug': 'small', 'display_name': 'Small', 'mem_limit': '1G', 'cpu_limit': 1, 'default': True}},
    {{'slug': 'tiny', 'display_name': 'Tiny', 'mem_limit': '256M', 'cpu_limit': 0.5, 'shm_size': '64M'}},
    {{'slug': 'gpu', 'display_name': 'One GPU', 'description': 'For CUDA work', 'mem_limit': '2G',
      'cpu_limit': 1, 'gpus': 1, 'groups': ['gpu-users']}},
]
HOG = {HOG!r}
def _hog(spawner):
    if spawner.user.name == 'prof-oom':
        spawner.cmd = ['python3', '-c', HOG]
c.Spawner.pre_spawn_hook = _hog
"""
GIB = 1024**3


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, image):
    hub = Hub(tmp_path_factory.mktemp("profiles"), EXTRA).start()
    for name in ("prof-bob", "prof-gina", "gpu-alice", "gpu-bea", "prof-oom"):
        hub.ensure_user(name)
    r = hub.api("POST", "/groups/gpu-users")
    assert r.status_code in (201, 409), r.text
    r = hub.api("POST", "/groups/gpu-users/users", json={"users": ["prof-gina", "gpu-alice", "gpu-bea"]})
    assert r.status_code == 200, r.text
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, hub.users)


def form_of(hub, user):
    """The spawn page as the user sees it after logging in (the dummy authenticator's shared password)."""
    with requests.Session() as s:
        s.get(f"{hub.url}/hub/login", timeout=30)
        r = s.post(f"{hub.url}/hub/login", timeout=30, data={
            "username": user, "password": "test-password", "_xsrf": s.cookies.get("_xsrf", "")})
        assert r.status_code == 200 and "/hub/login" not in r.url, r.url
        r = s.get(f"{hub.url}/hub/spawn/{user}", timeout=30)
    assert r.status_code == 200 and "/hub/spawn" in r.url, r.url
    return r.text


def wait_for(check, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def environ_of(dclient, container_id):
    """The environment of the container's first process (where the NVIDIA driver puts its variable)."""
    exec_id = dclient.exec_create(container_id, ["cat", "/proc/1/environ"])
    raw = dclient.exec_start(exec_id)
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_form_lists_only_what_the_groups_allow(hub):
    bob = form_of(hub, "prof-bob")
    assert "Small</strong> &mdash; 1 CPU, 1 GiB" in bob
    assert "Tiny</strong> &mdash; 0.5 CPUs, 256 MiB" in bob
    assert "One GPU" not in bob and 'value="gpu"' not in bob
    gina = form_of(hub, "prof-gina")
    assert "One GPU</strong> &mdash; 1 CPU, 2 GiB, 1 GPU" in gina
    assert "For CUDA work" in gina
    assert re.search(r"\d of 2 GPUs free now\.", gina)


@pytest.mark.parametrize("options, status, message", [
    ({"profile": "gpu"}, 403, "You may not use profile 'gpu' (One GPU: 1 CPU, 2 GiB, 1 GPU): it is only for "
                              "members of gpu-users. Profiles you may use: 'small' (Small: 1 CPU, 1 GiB), 'tiny'"),
    ({"profile": "huge"}, 400, "Unknown profile 'huge'. Profiles you may use: 'small'"),
    ({"profile": "small", "mem_limit": "64G"}, 400, "'mem_limit' cannot be set in the server options: limits come "
                                                    "from profiles."),
    ({"profile": "small", "gpus": 4}, 400, "'gpus' cannot be set in the server options"),
    ({"profile": ["small"]}, 400, "'profile' must be a name (text, at most 255 characters), not ['small']."),
])
def test_refused_options_are_400_or_403_and_create_nothing(hub, dclient, options, status, message):
    r = hub.spawn("prof-bob", options)
    assert r.status_code == status, r.text
    assert message in r.json()["message"]
    assert containers_of(dclient, "prof-bob") == []
    assert hub.server("prof-bob") is None
    assert message in _last_denial(hub, "prof-bob")


def test_an_admin_starting_the_gpu_profile_for_bob_is_refused_the_same_way(hub, dclient):
    hub.ensure_user("prof-admin", admin=True)
    r = hub.api("POST", "/users/prof-admin/tokens", json={"note": "issue 4 test"})
    assert r.status_code == 201, r.text
    admin = {"Authorization": f"token {r.json()['token']}"}
    r = requests.post(f"{hub.url}/hub/api/users/prof-bob/server", headers=admin, json={"profile": "gpu"}, timeout=30)
    assert r.status_code == 403, r.text
    assert "it is only for members of gpu-users" in r.json()["message"]
    assert containers_of(dclient, "prof-bob") == []
    denied = [e for e in hub.audit() if e["event"] == "spawn.denied" and e["user"] == "prof-bob"]
    assert denied[-1]["options"] == {"profile": "gpu"} and denied[-1]["reason"] == "not-entitled"
    assert "it is only for members of gpu-users" in denied[-1]["reasons"][0]


def test_two_gpu_users_get_different_gpus(hub, dclient):
    for user in ("gpu-alice", "gpu-bea"):
        hub.spawn_and_wait(user, {"profile": "gpu"})
        assert hub.server(user)["ready"], hub.server(user)
    seen = {}
    for user in ("gpu-alice", "gpu-bea"):
        (c,) = containers_of(dclient, user)
        info = dclient.inspect_container(c["Id"])
        labels = info["Config"]["Labels"]
        gpus = labels["hardened-spawner.gpus"]
        assert labels["hardened-spawner.profile"] == "gpu"
        assert labels["hardened-spawner.memory-limit"] == str(2 * GIB)
        (request,) = info["HostConfig"]["DeviceRequests"]
        assert (request["Driver"], request["DeviceIDs"]) == ("nvidia", [gpus])
        assert environ_of(dclient, c["Id"])["NVIDIA_VISIBLE_DEVICES"] == gpus
        seen[user] = gpus
    assert sorted(seen.values()) == ["0", "1"]

    # progress and audit name the profile and the GPUs
    log = hub.log()
    for user, gpus in seen.items():
        assert re.search(rf"{user}: Profile One GPU: 1 CPU, 2 GiB, 1 GPU", log)
        assert re.search(rf"{user}: Allocated GPU {gpus} for profile One GPU", log)
    audit = hub.audit()
    for user, gpus in seen.items():
        assert any(e["event"] == "gpu.allocate" and e["user"] == user and e["gpus"] == [gpus]
                   and e["profile"] == "gpu" for e in audit)
        spawn = next(e for e in audit if e["event"] == "spawn" and e["user"] == user)
        assert spawn["profile"] == "gpu" and spawn["limits"]["gpus"] == [gpus]

    # one GPU per user at once, named servers included
    message = refusal(hub, "gpu-alice", {"profile": "gpu"}, server="two")
    assert ("You already hold 1 GPU(s) on your other servers and may hold at most 1 at once, so profile 'gpu' "
            "(One GPU: 1 CPU, 2 GiB, 1 GPU) cannot start. Stop another GPU server.") in message
    assert len(containers_of(dclient, "gpu-alice")) == 1

    # a third GPU user reads what to do instead; nothing is created
    message = refusal(hub, "prof-gina", {"profile": "gpu"})
    assert ("No GPU is free for profile 'gpu' (One GPU: 1 CPU, 2 GiB, 1 GPU): it needs 1 and 0 of this hub's "
            "2 GPUs are free. Pick 'small' (Small: 1 CPU, 1 GiB) or 'tiny' (Tiny: 0.5 CPUs, 256 MiB) instead, "
            "or try again later: a GPU is freed as soon as the server holding it stops.") in message
    assert containers_of(dclient, "prof-gina") == []
    assert "No GPU is free" in _last_denial(hub, "prof-gina")

    # stopping frees the GPU for the next user
    hub.stop_server("gpu-alice")
    assert any(e["event"] == "gpu.release" and e["user"] == "gpu-alice" and e["gpus"] == [seen["gpu-alice"]]
               and e["reason"] == "stopped" for e in hub.audit())
    hub.spawn_and_wait("prof-gina", {"profile": "gpu"})
    (c,) = containers_of(dclient, "prof-gina")
    assert dclient.inspect_container(c["Id"])["Config"]["Labels"]["hardened-spawner.gpus"] == seen["gpu-alice"]
    hub.stop_server("prof-gina")
    hub.stop_server("gpu-bea")


def _last_denial(hub, user):
    denials = [e for e in hub.audit() if e["event"] == "spawn.denied" and e["user"] == user]
    return denials[-1]["reasons"][0] if denials else None


def refusal(hub, user, options, server=""):
    """The message a user reads when a spawn is refused inside start()."""
    r = hub.spawn(user, options, server)
    if r.status_code == 202:
        events = hub.progress(user, server)
        assert events[-1].get("failed"), events
        return events[-1]["message"]
    assert r.status_code in (400, 403, 409, 503), r.text  # refused within slow_spawn_timeout
    return r.json()["message"]


def test_oom_death_is_told_in_words(hub, dclient):
    user = "prof-oom"
    hub.spawn_and_wait(user, {"profile": "tiny"})
    (c,) = containers_of(dclient, user)
    dclient.exec_start(dclient.exec_create(c["Id"], ["touch", "/tmp/hog"]))

    words = "used more than 256 MiB, its memory limit, and was stopped by the out-of-memory killer"
    event = wait_for(lambda: next((e for e in hub.audit() if e["event"] == "oom" and e["user"] == user), None),
                     timeout=60, what="the oom audit line")
    assert event["memory"] == 256 * 1024**2 and event["exit_code"] == 137
    assert event["message"] == f"Your server {words}."
    wait_for(lambda: hub.server(user) is None, what="the hub to notice the server stopped")
    log = hub.log()
    assert f"server stopped, with exit code: Your server {words}." in log or \
        f"server stopped with exit code: Your server {words}." in log
    assert re.search(rf"{user}: out of memory: Your server {words}", log)

    # the next visit: the form and the next spawn's progress say what happened and what to pick
    notice = re.escape("Your last server (stopped ") + r"[0-9-]+ [0-9:]+ UTC\) " + re.escape(
        f"{words}. For more memory pick 'small' (Small: 1 CPU, 1 GiB).")
    assert re.search(notice, html.unescape(form_of(hub, user)))
    hub.spawn_and_wait(user, {"profile": "small"})
    assert re.search(rf"{user}: {notice}", hub.log())
    hub.stop_server(user)
    assert "Your last server" not in form_of(hub, user)  # told once the server started again


def test_docker_reports_oom_the_way_the_parsers_read_it(dclient, image):
    """The real Docker fields behind the OOM report: State.OOMKilled kept at exit, and the events."""
    name = "prof-oomprobe"
    label = "hardened-spawner.memory-limit"
    since = int(time.time()) - 1
    c = dclient.create_container(
        image, ["python3", "-c", "import time; time.sleep(1); b = bytearray(300 * 2**20); time.sleep(60)"],
        name=name, labels={"hardened-spawner.owner": name, label: str(128 * 1024**2)},
        host_config=dclient.create_host_config(mem_limit="128m", memswap_limit="128m", network_mode="none"))
    try:
        dclient.start(c)
        assert dclient.wait(c, timeout=60)["StatusCode"] == 137
        report = oom.from_inspect(dclient.inspect_container(c), label)
        assert report.memory == 128 * 1024**2 and report.exit_code == 137
        assert report.message().startswith("Your server used more than 128 MiB, its memory limit, and was stopped")
        events = list(dclient.events(since=since, until=int(time.time()) + 1, decode=True,
                                     filters={"container": c["Id"], "event": ["oom", "die"]}))
        from_events = oom.from_events(events, label)
        assert (from_events.memory, from_events.exit_code) == (128 * 1024**2, 137)
        # the die event's time (whole seconds) and State.FinishedAt may straddle a second
        seconds = [datetime.datetime.strptime(r.finished_at, "%Y-%m-%dT%H:%M:%SZ") for r in (report, from_events)]
        assert abs((seconds[0] - seconds[1]).total_seconds()) <= 1
    finally:
        try:
            dclient.remove_container(c, force=True)
        except docker.errors.NotFound:
            pass
