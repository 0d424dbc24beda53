"""Issue 25: one user cannot fill the disk everyone depends on, through a real hub on the real daemon.

As the notebook user inside a real spawned container: 200 MB written to the server's stdout leaves
the host-side log (``docker inspect`` LogPath under the daemon's data root) within the profile's bound.
An admin ``log_config`` without a bound is refused. A ``disk_limit`` on this daemon (overlay2 on
ext4, which cannot enforce ``storage_opt size``) is refused before anything is created. A second daemon whose data root
is a small loop-mounted ext4 filesystem has less free space than the default ``min_free_disk``: a
spawn on it is refused (``disk-low``) with the figures, before anything is pulled or created.
"""

import glob
import os
import subprocess
import time

import docker
import pytest

from conftest import containers_of
from hubrig import REPO, Hub, remove_user_artifacts

pytestmark = [pytest.mark.docker, pytest.mark.hub]

LOG_MAX_SIZE, LOG_MAX_FILE = 2 * 1024**2, 3  # a small bound, so the test shows it, not Docker's defaults
WRITTEN = 200_000_000
LINE = 64 * 1024  # json-file rotates after the line that crosses max-size: one line of at most 16 KiB, JSON-encoded
TMPFS = 256 * 1024**2  # /tmp with a read-only root: small, as tmpfs pages count against the memory limit
WRITE_MB = 3000
CONFIG = f"""
c.HardenedDockerSpawner.log_max_size = "{LOG_MAX_SIZE}"
c.HardenedDockerSpawner.log_max_file = {LOG_MAX_FILE}


def _unbounded_log_for_one_user(spawner):  # evaluated at spawn: validate-config cannot see it
    if spawner.user.name == "disk-unbounded":
        return {{"log_config": {{"type": "json-file", "config": {{"max-file": "3"}}}}}}
    return {{}}


c.HardenedDockerSpawner.extra_host_config = _unbounded_log_for_one_user


def _disk_settings_for_some_users(spawner):
    if spawner.user.name == "disk-layer":  # a writable-layer bound this daemon (overlay2) cannot enforce
        spawner.disk_limit = "20G"
    if spawner.user.name == "disk-ro":  # a read-only root, /tmp a small tmpfs
        spawner.read_only_root = True
        spawner.tmpfs_size = "{TMPFS}"


c.Spawner.pre_spawn_hook = _disk_settings_for_some_users
"""
USERS = ["disk-logs", "disk-unbounded", "disk-layer", "disk-ro"]
SMALL_DISK = "512M"  # far below the default min_free_disk (2G)


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, image):
    hub = Hub(tmp_path_factory.mktemp("disk-hub"), CONFIG)
    hub.users.update(USERS)
    hub.start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, USERS)
    for volume in dclient.volumes(filters={"name": "jupyter-disk-2dro-ssh-keys"})["Volumes"] or ():
        dclient.remove_volume(volume["Name"])  # the read-only root's keys volume


def exec_in(dclient, container, cmd):
    exec_id = dclient.exec_create(container, cmd)  # as the container's user: the notebook user
    out = dclient.exec_start(exec_id).decode(errors="replace")
    return dclient.exec_inspect(exec_id)["ExitCode"], out


def test_200mb_on_stdout_leave_the_host_log_within_its_bound(hub, dclient):
    events = hub.spawn_and_wait("disk-logs")
    assert events[-1].get("ready"), events[-1]
    (container,) = containers_of(dclient, "disk-logs")
    info = dclient.inspect_container(container["Id"])
    assert info["HostConfig"]["LogConfig"] == {
        "Type": "json-file", "Config": {"max-size": str(LOG_MAX_SIZE), "max-file": str(LOG_MAX_FILE)}}
    # as a terminal would: the notebook user writes to the server's own stdout
    code, out = exec_in(dclient, container["Id"], [
        "sh", "-c", f"id -u; head -c {WRITTEN} /dev/zero | tr '\\0' x | dd of=/proc/1/fd/1 bs=1M iflag=fullblock"])
    assert code == 0, out
    assert out.split()[0] != "0" and f"{WRITTEN} bytes" in out, out  # every byte was written
    files = glob.glob(info["LogPath"] + "*")  # the log and its rotated files
    sizes = {os.path.basename(f): os.path.getsize(f) for f in files}
    print(f"wrote {WRITTEN} bytes; host log files {sizes}, {sum(sizes.values())} bytes in all")
    assert 1 <= len(files) <= LOG_MAX_FILE, sizes
    assert all(size <= LOG_MAX_SIZE + LINE for size in sizes.values()), sizes
    assert sum(sizes.values()) > LOG_MAX_SIZE  # the write reached the log, and was rotated away
    assert hub.user_get("disk-logs", "/api/status").status_code == 200  # the server still answers


def test_an_admin_log_config_without_a_bound_is_refused(hub, dclient):
    r = hub.spawn("disk-unbounded")
    assert r.status_code == 202, r.text  # the hub rig answers at once; the refusal is on the progress stream
    body = hub.progress("disk-unbounded")[-1]
    # the callable's value is checked as validate-config checks a static one, before anything is created
    assert body["failed"] and (body["status"], body["reason"]) == (503, "unsafe-config"), body
    assert [f["rule"] for f in body["findings"]] == ["HardenedDockerSpawner.extra_host_config['log_config']"], body
    assert body["findings"][0]["message"].startswith(
        "its json-file log has max-size None, not a bound of at most 2 MiB (profile 'default')"), body
    assert containers_of(dclient, "disk-unbounded") == []


def test_a_disk_limit_the_storage_driver_cannot_enforce_is_refused_before_create(hub, dclient):
    info = dclient.info()
    backing = dict(info["DriverStatus"]).get("Backing Filesystem")
    assert (info["Driver"], backing) != ("overlay2", "xfs"), "this daemon can enforce disk_limit"
    r = hub.spawn("disk-layer")
    assert r.status_code == 202, r.text
    body = hub.progress("disk-layer")[-1]
    assert body["failed"] and (body["status"], body["reason"]) == (503, "unsafe-config"), body
    [finding] = body["findings"]
    assert finding["rule"] == "disk_limit of profile 'default'", finding
    assert finding["message"] == (
        f"the Docker daemon's storage driver {info['Driver']!r} on {backing} cannot bound a container's writable "
        "layer (storage_opt size needs btrfs, zfs, or overlay2 on xfs mounted with pquota); remove disk_limit "
        "or move the daemon's data root"), finding
    assert containers_of(dclient, "disk-layer") == []


def test_3gb_into_a_read_only_root_and_its_tmpfs_fail_and_nothing_reaches_the_host(hub, dclient):
    events = hub.spawn_and_wait("disk-ro")
    assert events[-1].get("ready"), events[-1]
    (container,) = containers_of(dclient, "disk-ro")
    host = dclient.inspect_container(container["Id"])["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["Tmpfs"] == {"/tmp": f"rw,nosuid,nodev,size={TMPFS}"}, host
    results = {}
    for target in ("/tmp/fill", "/var/tmp/fill", "/fill"):
        code, out = exec_in(dclient, container["Id"], [
            "sh", "-c", f"id -u; dd if=/dev/zero of={target} bs=1M count={WRITE_MB}; echo dd-exit=$?; "
                        f"stat -c written=%s {target} 2>/dev/null || echo written=0"])
        results[target] = out
        print(f"{target}: asked {WRITE_MB} MB; {out.split(chr(10), 1)[1]!r}")
        assert out.split()[0] != "0" and "dd-exit=1" in out, out
    assert "No space left on device" in results["/tmp/fill"] and f"written={TMPFS}" in results["/tmp/fill"]
    for target in ("/var/tmp/fill", "/fill"):
        assert "Read-only file system" in results[target] and "written=0" in results[target], results[target]
    [listed] = dclient.containers(all=True, size=True, filters={"id": container["Id"]})
    assert listed["SizeRootFs"] > 0, listed  # the sizes were measured; Docker leaves out a SizeRw of 0
    size_rw = listed.get("SizeRw", 0)
    print(f"the container's writable layer on the host holds {size_rw} bytes")
    assert size_rw < 1024**2  # nothing of the 9 GB asked for reached the daemon's disk
    assert hub.user_get("disk-ro", "/api/status").status_code == 200  # the server still answers


@pytest.fixture(scope="module")
def small_disk_daemon():
    """A daemon of this session's own whose data root is a loop-mounted ext4 of SMALL_DISK; stopped after."""
    rig, name = str(REPO / "rig" / "dockerd.sh"), os.environ.get("HS_DOCKERD", "main") + "-low"
    sock = subprocess.run(["bash", rig, "start", name, "--no-gpu-hook", f"--loopfs=ext4:{SMALL_DISK}"],
                          check=True, capture_output=True, text=True).stdout.strip()
    try:
        yield sock, docker.APIClient(base_url=f"unix://{sock}", version="auto")
    finally:
        subprocess.run(["bash", rig, "stop", name], check=True)


def test_a_spawn_is_refused_when_the_data_root_has_less_free_than_min_free_disk(tmp_path, small_disk_daemon):
    sock, client = small_disk_daemon
    root = client.info()["DockerRootDir"]
    st = os.statvfs(root)  # root here: the rig daemon's data root is readable
    assert st.f_bavail * st.f_frsize < 2 * 1024**3  # the default min_free_disk, left as it is
    hub = Hub(tmp_path / "hub", env={"DOCKER_HOST": f"unix://{sock}"}).start()
    try:
        started = time.monotonic()
        r = hub.spawn("disk-low")
        assert r.status_code == 202, r.text
        event = hub.progress("disk-low")[-1]
        elapsed = time.monotonic() - started
        assert event["failed"] and (event["status"], event["reason"]) == (503, "disk-low"), event
        assert "The hub is not starting servers now: the disk that holds every server has" in event["message"]
        assert "Files in your home directory are not affected." in event["message"]
        [denied] = [e for e in hub.audit() if e["event"] == "spawn.denied" and e["user"] == "disk-low"]
        assert denied["reason"] == "disk-low" and denied["detail"].startswith(
            f"HardenedDockerSpawner.min_free_disk: {root} has "), denied
        assert denied["detail"].endswith("min_free_disk is 2147483648 bytes"), denied
        print(f"refused in {elapsed:.2f}s: {event['message']!r}; audit detail {denied['detail']!r}")
        assert client.containers(all=True) == [] and client.volumes()["Volumes"] in (None, [])  # nothing created
    finally:
        hub.stop()
