"""Issue 25: a profile's ``disk_limit`` bounds a container's writable layer, through a real hub.

A daemon of this session's own keeps its data root on a loop-mounted btrfs image, with the btrfs
storage driver, which enforces ``storage_opt size`` (a btrfs qgroup). As the notebook user inside
the spawned server, 3 GB written to ``/tmp`` and then to ``/var/tmp`` (the root filesystem's
writable places; the home directory is a volume) stops with "Disk quota exceeded" near the bound,
and the filesystem under the data root, and the loop image on the host's disk, grow by at most the
bound. Another user's server keeps answering. (On overlay2 over ext4, which cannot enforce the
bound, a profile with ``disk_limit`` is refused: tests/integration/test_disk_bounds.py.)
"""

import os
import re
import subprocess

import docker
import pytest

from conftest import containers_of
from hubrig import IMAGE, REPO, Hub, remove_user_artifacts

pytestmark = [pytest.mark.docker, pytest.mark.hub]

BTRFS = "6G"  # the loop image: the single-user image (about 700 MB) and one bounded writable layer
DISK_LIMIT = 1536 * 1024**2  # on btrfs the bound counts the image's files the layer references too
WRITE_MB = 3000
CONFIG = f"""
c.HardenedDockerSpawner.read_only_root = False  # this module bounds the writable layer itself
c.HardenedDockerSpawner.profiles = [
    {{"slug": "bounded", "display_name": "Bounded disk", "disk_limit": "{DISK_LIMIT}", "default": True}},
]
"""
USERS = ["layer-fill", "layer-other"]


@pytest.fixture(scope="module")
def btrfs_daemon(dclient, image):
    """``(sock, client, data root, loop image)`` of a daemon on a loop-mounted btrfs; stopped after."""
    rig, name = str(REPO / "rig" / "dockerd.sh"), os.environ.get("HS_DOCKERD", "main") + "-btrfs"
    sock = subprocess.run(["bash", rig, "start", name, "--no-gpu-hook", f"--loopfs=btrfs:{BTRFS}"],
                          check=True, capture_output=True, text=True).stdout.strip()
    try:
        client = docker.APIClient(base_url=f"unix://{sock}", version="auto")
        info = client.info()
        assert info["Driver"] == "btrfs", info["Driver"]
        if not client.images(IMAGE):  # the rig daemon's image, as it is (docker save | docker load)
            client.load_image(dclient.get_image(IMAGE))
        root = info["DockerRootDir"]
        yield sock, client, root, os.path.join(os.path.dirname(root), "btrfs.img")
    finally:
        remove_user_artifacts(client, USERS)
        subprocess.run(["bash", rig, "stop", name], check=True)


@pytest.fixture(scope="module")
def hub(tmp_path_factory, btrfs_daemon):
    hub = Hub(tmp_path_factory.mktemp("layer-hub"), CONFIG, env={"DOCKER_HOST": f"unix://{btrfs_daemon[0]}"})
    hub.users.update(USERS)
    hub.start()
    yield hub
    hub.stop()


def used(path):
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def allocated(path):
    return os.stat(path).st_blocks * 512  # the sparse loop image's blocks on the host's own disk


def test_3gb_into_the_root_filesystem_stops_at_the_profiles_disk_limit(hub, btrfs_daemon):
    _, client, root, img = btrfs_daemon
    for user in USERS:
        events = hub.spawn_and_wait(user)
        assert events[-1].get("ready"), events[-1]
    (container,) = containers_of(client, "layer-fill")
    info = client.inspect_container(container["Id"])
    assert info["HostConfig"]["StorageOpt"] == {"size": str(DISK_LIMIT)}, info["HostConfig"]["StorageOpt"]
    before, before_img = used(root), allocated(img)  # btrfs frees a removed file's extents later: one baseline
    for target in ("/tmp/fill", "/var/tmp/fill"):
        exec_id = client.exec_create(container["Id"], [  # as the container's user: the notebook user
            "sh", "-c", f"id -u; dd if=/dev/zero of={target} bs=1M count={WRITE_MB}; echo dd-exit=$?; "
                        f"used=$(stat -c %s {target}); echo written=$used"])
        out = client.exec_start(exec_id).decode(errors="replace")
        grown, grown_img = used(root) - before, allocated(img) - before_img
        written = int(re.search(r"written=(\d+)", out).group(1))
        print(f"{target}: asked {WRITE_MB} MB, written {written} bytes; since the first write the data root grew "
              f"{grown} bytes, the loop image on the host {grown_img} bytes; dd said: {out.splitlines()[-3:]}")
        assert out.split()[0] != "0", out  # not root
        assert "Disk quota exceeded" in out and "dd-exit=1" in out, out
        assert 0 < written < DISK_LIMIT, out
        assert grown <= DISK_LIMIT and grown_img <= DISK_LIMIT, (grown, grown_img)
        rm = client.exec_create(container["Id"], ["rm", target])
        client.exec_start(rm)
        assert client.exec_inspect(rm)["ExitCode"] == 0
    for user in USERS:  # the filler's server and the other user's both still answer
        assert hub.user_get(user, "/api/status").status_code == 200, user
