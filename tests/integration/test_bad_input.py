"""Issue 3: bad input gets a clear error and creates nothing."""

import pytest

from conftest import containers_of

pytestmark = [pytest.mark.docker, pytest.mark.hub]

UNSAFE = {
    "privileged": ("c.HardenedDockerSpawner.extra_host_config = {'privileged': True}",
                   "HardenedDockerSpawner.extra_host_config['privileged']"),
    "docker-sock": ("c.HardenedDockerSpawner.volumes = {'/var/run/docker.sock': '/var/run/docker.sock'}",
                    "/var/run/docker.sock is a container runtime socket"),
    "host-network": ("c.HardenedDockerSpawner.network_name = 'host'",
                     "HardenedDockerSpawner.network_name: network 'host'"),
    "uid-0": ("c.HardenedDockerSpawner.run_as_uid = 0", "HardenedDockerSpawner.run_as_uid"),
    "negative-limit": ("c.HardenedDockerSpawner.pids_limit = -1", "HardenedDockerSpawner.pids_limit"),
    "absurd-limit": ("c.HardenedDockerSpawner.mem_limit = '4000T'", "HardenedDockerSpawner.mem_limit"),
    "bad-image": ("c.HardenedDockerSpawner.image = 'UPPER/case::ref'", "malformed image reference"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_hub_refuses_to_start_on_unsafe_config(make_hub, dclient, case):
    line, expected = UNSAFE[case]
    hub = make_hub(line + "\n", start=False)
    hub.start(wait=False)
    assert hub.wait_exit(60) != 0
    log = hub.log()
    assert "hardened_spawner refuses this configuration" in log
    assert expected in log
    assert hub.proc.returncode != 0


def test_image_outside_allowlist_is_403_and_creates_nothing(make_hub, dclient, image):
    user = "h3-picky"
    hub = make_hub(f"c.HardenedDockerSpawner.allowed_images = {{'default': {image!r}}}\n")
    r = hub.spawn(user, {"image": "evil/miner:1"})
    assert r.status_code == 403 and r.json()["reason"] == "image-not-allowed", r.text
    assert "Image 'evil/miner:1' is not allowed here. Allowed images: default." in r.json()["message"]
    assert containers_of(dclient, user) == []
    # the allowed one spawns
    events = hub.spawn_and_wait(user, {"image": "default"})
    assert events[-1].get("ready"), events


def test_unreachable_docker_daemon_fails_clearly(make_hub, dclient, tmp_path):
    user = "h3-nodocker"
    missing = f"unix://{tmp_path}/no-such-docker.sock"
    hub = make_hub(env={"DOCKER_HOST": missing, "HS_HUB_IP": "127.0.0.1"})
    r = hub.spawn(user)
    assert r.status_code in (202, 503), r.text
    if r.status_code == 202:
        message = hub.progress(user)[-1]["message"]
    else:
        message = r.json()["message"]
    assert "The hub cannot reach the Docker daemon" in message, message
    assert "no-such-docker.sock" in message
    assert containers_of(dclient, user) == []
    denial = next(e for e in hub.audit() if e["event"] == "spawn.denied")
    assert denial["user"] == user and denial["reason"] == "docker-unreachable" and denial["status"] == 503
