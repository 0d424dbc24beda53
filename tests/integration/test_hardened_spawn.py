"""Issue 3 end to end: a real hub spawns hardened containers on the rig's daemon."""

import json
import time

import docker
import pytest
import requests

from conftest import containers_of

pytestmark = [pytest.mark.docker, pytest.mark.hub]

USER = "h3-alice"


def exec_in(dclient, container, cmd, user=None):
    exec_id = dclient.exec_create(container, cmd, user=user or "")
    out = dclient.exec_start(exec_id).decode(errors="replace")
    return dclient.exec_inspect(exec_id)["ExitCode"], out


def test_spawn_is_hardened(make_hub, dclient, image):
    hub = make_hub()
    events = hub.spawn_and_wait(USER)
    messages = [e.get("message", "") for e in events]
    assert any("Checking image" in m for m in messages), messages
    assert any("Preparing a container with 1 CPU, 2 GiB" in m for m in messages), messages
    assert any("Starting the container" in m for m in messages), messages
    assert events[-1].get("ready"), events[-1]

    status = hub.user_get(USER, "/api/status")
    assert status.status_code == 200, status.text

    (container,) = containers_of(dclient, USER)
    info = dclient.inspect_container(container["Id"])
    host = info["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Privileged"] is False
    assert host["Memory"] == 2 * 1024**3
    assert (host["CpuPeriod"], host["CpuQuota"]) == (100_000, 100_000)
    assert host["PidsLimit"] == 1024
    assert host["ShmSize"] == 256 * 1024**2
    assert host["NetworkMode"] == "hardened-spawner"
    assert host["PidMode"] == "" and host["UTSMode"] == "" and host["UsernsMode"] == ""
    assert host["IpcMode"] in ("private", "shareable")
    assert not any("docker.sock" in b for b in host.get("Binds") or [])
    assert info["Config"]["User"] not in ("", "0", "root")
    labels = info["Config"]["Labels"]
    assert labels["hardened-spawner.owner"] == USER
    assert labels["hardened-spawner.server"] == ""
    assert labels["hardened-spawner.policy-version"].startswith("0.1.0+")
    assert not any("token" in (k + v).lower() for k, v in labels.items())

    code, out = exec_in(dclient, container["Id"], ["sh", "-c", "id -u; grep CapEff /proc/self/status /proc/1/status"])
    assert code == 0
    lines = out.split()
    assert lines[0] == "1000"
    assert out.count("0000000000000000") == 2, out
    code, out = exec_in(dclient, container["Id"], ["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
    assert int(out) == 2 * 1024**3
    code, out = exec_in(dclient, container["Id"], ["cat", "/sys/fs/cgroup/pids/pids.max"])
    assert out.strip() == "1024"

    hub.stop_server(USER)
    assert containers_of(dclient, USER) == []  # remove=True in the shipped config
    audit = hub.audit()
    spawn = next(e for e in audit if e["event"] == "spawn")
    assert spawn["user"] == USER and spawn["decision"] == "admit"
    assert spawn["digest"].startswith("sha256:")
    assert spawn["limits"] == {"memory": 2 * 1024**3, "cpus": 1.0, "pids": 1024, "shm": 256 * 1024**2, "gpus": [],
                               "log_max_size": 10 * 1024**2, "log_max_file": 3, "disk": None, "home": None,
                               "home_files": 0}
    assert any(e["event"] == "stop" and e["user"] == USER for e in audit)
    assert hub.token not in json.dumps(audit)


def test_fork_bomb_is_stopped_by_the_pids_limit(make_hub, dclient, image):
    user = "h3-forker"
    hub = make_hub("c.HardenedDockerSpawner.pids_limit = 64\n")
    hub.spawn_and_wait(user)
    (container,) = containers_of(dclient, user)
    bomb = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(8); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print(n, e.errno)\n"
    )
    started = time.monotonic()
    code, out = exec_in(dclient, container["Id"], ["python3", "-c", bomb])
    forked, errno = map(int, out.split())
    assert errno == 11  # EAGAIN: the kernel refused the fork
    assert forked < 64
    # while the container is saturated the hub still answers
    assert hub.api("GET", "/").status_code == 200
    assert time.monotonic() - started < 8
    time.sleep(9)  # the children exit; the server answers again
    assert hub.user_get(user, "/api/status").status_code == 200


def test_restart_reruns_checks_and_recreates_under_a_new_policy(make_hub, dclient, image):
    user = "h3-restart"
    keep = "c.HardenedDockerSpawner.remove = False\n"
    hub = make_hub(keep, name="hub1")
    hub.spawn_and_wait(user)
    (first,) = containers_of(dclient, user)
    hub.stop_server(user)
    assert dclient.inspect_container(first["Id"])["State"]["Running"] is False
    hub.stop()

    # Same container, restarted with a hub whose image is missing: DockerSpawner would restart
    # the old container; the hardened spawner re-runs its checks and refuses.
    hub2 = make_hub(keep + "c.HardenedDockerSpawner.image = 'hardened-spawner/absent:1'\n"
                    "c.HardenedDockerSpawner.pull_policy = 'never'\n", name="hub2")
    hub2.users.add(user)
    hub2.spawn(user)
    events = hub2.progress(user)
    assert events[-1].get("failed"), events
    assert "hardened-spawner/absent:1 is not on this Docker host" in events[-1]["message"]
    assert dclient.inspect_container(first["Id"])["State"]["Running"] is False
    hub2.stop()

    # A hub with a different memory limit recreates the container instead of restarting it.
    hub3 = make_hub(keep + "c.HardenedDockerSpawner.mem_limit = '1G'\n", name="hub3")
    hub3.users.add(user)
    events = hub3.spawn_and_wait(user)
    assert any("Recreating the container" in e.get("message", "") for e in events), events
    (second,) = containers_of(dclient, user)
    assert second["Id"] != first["Id"]
    assert dclient.inspect_container(second["Id"])["HostConfig"]["Memory"] == 1024**3
    audit = hub3.audit()
    assert [e["event"] for e in audit if e.get("user") == user and e["event"].startswith("spawn")] == ["spawn"]


def test_digest_pinned_image_spawns(make_hub, dclient, image, registry):
    user = "h3-pinned"
    repo = f"{registry}/hs/singleuser"
    dclient.tag(image, repo, "pin")
    for line in dclient.push(repo, "pin", stream=True, decode=True):
        assert "error" not in line, line
    digest_ref = next(d for d in dclient.inspect_image(f"{repo}:pin")["RepoDigests"] if d.startswith(repo))
    # Forget the local names so the spawner must pull by digest from the registry.
    dclient.remove_image(f"{repo}:pin")
    with pytest.raises(docker.errors.ImageNotFound):
        dclient.inspect_image(digest_ref)
    hub = make_hub(f"c.HardenedDockerSpawner.image = {digest_ref!r}\n")
    events = hub.spawn_and_wait(user)
    assert events[-1].get("ready"), events
    (container,) = containers_of(dclient, user)
    # created from the admitted image's Id (issue 12): the digest the user named is the content that runs
    assert dclient.inspect_container(container["Id"])["Image"] == dclient.inspect_image(digest_ref)["Id"]
    spawn = next(e for e in hub.audit() if e["event"] == "spawn")
    assert spawn["digest"] == digest_ref.split("@")[1]
    assert hub.user_get(user, "/api/status").status_code == 200


def test_hub_api_answers_the_spawn_page(make_hub, image):
    hub = make_hub()
    assert requests.get(hub.url + "/hub/login", timeout=10).status_code == 200
