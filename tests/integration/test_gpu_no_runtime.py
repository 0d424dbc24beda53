"""Issue 4: a Docker daemon without the NVIDIA runtime gives a clear message and frees the GPU.

A second daemon, started without the stand-in nvidia hook (so Docker has no
``nvidia`` device driver), runs a tiny image made by ``docker import`` of an
empty archive: the GPU request fails at ``docker start``, before the image's
command would run, exactly as on a host without nvidia-container-toolkit.
"""

import io
import subprocess
import tarfile

import docker
import pytest

from hubrig import REPO, Hub

pytestmark = [pytest.mark.docker, pytest.mark.hub]

USER = "gpu-nohook"
IMAGE = "hs-test/empty:nohook"
EXTRA = """
c.HardenedDockerSpawner.network_name = 'none'  # the server never has to answer: the start fails first
c.HardenedDockerSpawner.isolate_containers = False  # 'none' is no bridge to isolate on
c.HardenedDockerSpawner.gpu_ids = ['0']
c.HardenedDockerSpawner.profiles = [
    {'slug': 'cpu', 'display_name': 'CPU', 'default': True},
    {'slug': 'gpu', 'display_name': 'GPU', 'gpus': 1},
]
"""


@pytest.fixture(scope="module")
def nohook():
    """The second daemon's docker-py client; stopped at the end of the module."""
    rig = str(REPO / "rig" / "dockerd.sh")
    sock = subprocess.run(["bash", rig, "start", "nohook", "--no-gpu-hook"],
                          check=True, capture_output=True, text=True).stdout.strip()
    try:
        client = docker.APIClient(base_url=f"unix://{sock}", version="auto")
        buf = io.BytesIO()
        tarfile.open(fileobj=buf, mode="w").close()
        # a non-root USER passes the hub's image policy; CMD gives the spawner a command; a HOME on the
        # /tmp tmpfs, as the default read-only root needs a writable home (the image has no /etc/passwd)
        client.import_image_from_data(buf.getvalue(), repository=IMAGE.split(":")[0], tag=IMAGE.split(":")[1],
                                      changes=["USER 1000:100", "ENV HOME=/tmp", "CMD [\"jupyterhub-singleuser\"]"])
        yield sock, client
    finally:
        subprocess.run(["bash", rig, "stop", "nohook"], check=True)


def test_no_nvidia_runtime_is_a_clear_refusal_and_frees_the_gpu(tmp_path, nohook):
    sock, client = nohook
    hub = Hub(tmp_path / "hub", EXTRA, env={
        "DOCKER_HOST": f"unix://{sock}", "HS_SINGLEUSER_IMAGE": IMAGE, "HS_HUB_IP": "127.0.0.1"}).start()
    try:
        for attempt in range(2):  # the second attempt proves the first one released the GPU
            r = hub.spawn(USER, {"profile": "gpu"})
            assert r.status_code in (201, 202), r.text
            last = hub.progress(USER)[-1]
            assert last.get("failed"), last
            assert ("this host has no NVIDIA container runtime: Docker could not select the 'nvidia' device "
                    "driver. Ask the hub admin to install nvidia-container-toolkit and restart Docker. "
                    "The GPU was released") in last["message"], (attempt, last)
            assert client.containers(all=True, filters={"label": f"hardened-spawner.owner={USER}"}) == []
        audit = hub.audit()
        releases = [e for e in audit if e["event"] == "gpu.release" and e["user"] == USER]
        assert [(e["gpus"], e["reason"]) for e in releases] == [(["0"], "start failed")] * 2
        denials = [e for e in audit if e["event"] == "spawn.denied" and e.get("reason") == "no-gpu-runtime"]
        assert len(denials) == 2 and 'could not select device driver "nvidia"' in denials[0]["detail"]
        assert denials[0]["status"] == 503 and last["reason"] == "no-gpu-runtime" and last["ref"] == denials[1]["ref"]
    finally:
        hub.stop()
        for c in client.containers(all=True, filters={"label": f"hardened-spawner.owner={USER}"}):
            client.remove_container(c["Id"], force=True)
