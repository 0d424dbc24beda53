"""Issue 25: one user cannot fill the disk everyone depends on, through a real hub on the real daemon.

As the notebook user inside a real spawned container: 200 MB written to the server's stdout leaves
the host-side log (``docker inspect`` LogPath under the daemon's data root) within the profile's bound.
An admin ``log_config`` without a bound is refused by the invariants. With ``min_free_disk`` above
the free space under the daemon's data root, a spawn is refused (``disk-low``) with the figures.
"""

import glob
import os

import pytest

from conftest import containers_of
from hubrig import Hub, remove_user_artifacts

pytestmark = [pytest.mark.docker, pytest.mark.hub]

LOG_MAX_SIZE, LOG_MAX_FILE = 2 * 1024**2, 3  # a small bound, so the test shows it, not Docker's defaults
WRITTEN = 200_000_000
LINE = 64 * 1024  # json-file rotates after the line that crosses max-size: one line of at most 16 KiB, JSON-encoded
CONFIG = f"""
c.HardenedDockerSpawner.log_max_size = "{LOG_MAX_SIZE}"
c.HardenedDockerSpawner.log_max_file = {LOG_MAX_FILE}


def _unbounded_log_for_one_user(spawner):  # evaluated at spawn: only the invariants can see it
    if spawner.user.name == "disk-unbounded":
        return {{"log_config": {{"type": "json-file", "config": {{"max-file": "3"}}}}}}
    return {{}}


c.HardenedDockerSpawner.extra_host_config = _unbounded_log_for_one_user


def _low_disk_for_one_user(spawner):  # the threshold, above the free space measured as the hub starts
    if spawner.user.name == "disk-low":
        spawner.min_free_disk = "MIN_FREE"


c.Spawner.pre_spawn_hook = _low_disk_for_one_user
"""
USERS = ["disk-logs", "disk-unbounded", "disk-low"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, image):
    st = os.statvfs(dclient.info()["DockerRootDir"])  # root here: the rig daemon's data root is readable
    above = st.f_bavail * st.f_frsize + 64 * 1024**3
    hub = Hub(tmp_path_factory.mktemp("disk-hub"), CONFIG.replace("MIN_FREE", str(above)))
    hub.users.update(USERS)
    hub.start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, USERS)


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
    assert body["failed"] and (body["status"], body["reason"]) == (503, "container-not-hardened"), body
    assert {f["rule"] for f in body["findings"]} == {"container.log-bound"}, body
    assert "max-size None" in body["findings"][0]["message"], body
    assert containers_of(dclient, "disk-unbounded") == []


def test_a_spawn_is_refused_when_the_data_root_has_less_free_than_min_free_disk(hub, dclient):
    r = hub.spawn("disk-low")
    assert r.status_code == 202, r.text
    event = hub.progress("disk-low")[-1]
    assert event["failed"] and (event["status"], event["reason"]) == (503, "disk-low"), event
    assert "The hub is not starting servers now: the disk that holds every server has" in event["message"]
    assert "Files in your home directory are not affected." in event["message"]
    [denied] = [e for e in hub.audit() if e["event"] == "spawn.denied" and e["user"] == "disk-low"]
    root = dclient.info()["DockerRootDir"]
    assert denied["reason"] == "disk-low" and denied["detail"].startswith(f"HardenedDockerSpawner.min_free_disk: {root} has ")
    print(denied["detail"])
    assert containers_of(dclient, "disk-low") == []
