"""Attacks on what runs: each hole the adversarial review found, driven through a real hub and daemon.

One hub serves the module; each test uses its own users and images. The
images are built from the rig's single-user image by the test, as an
attacker who controls an image would build them.
"""

import io
import json
import os
import time

import docker
import pytest
from conftest import containers_of
from hubrig import IMAGE, Hub, remove_user_artifacts
from sshrig import keygen, write_keys

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.attack]

EXTRA = """
c.HardenedDockerSpawner.allowed_images = '*'
c.HardenedDockerSpawner.remove = False
c.HardenedDockerSpawner.admission_rule_modes = {'image.no-healthcheck': 'off'}

import docker as _docker
from hardened_spawner.keys.stores import FileKeyStore


class TagMovingStore(FileKeyStore):
    # moves a tag while the spawn is between admission and create (the key fetch), as a CI job could

    def fetch(self, username):
        if username == "atk-race":
            _docker.APIClient(base_url=DOCKER_URL, version="auto").tag("hardened-spawner/attack-good2:1", "hardened-spawner/attack-race",
                                                  "1", force=True)
        return super().fetch(username)


c.HardenedDockerSpawner.ssh_key_store_class = TagMovingStore
""".replace("DOCKER_URL", repr(os.environ.get("DOCKER_HOST", "")))


def build(dclient, tag, lines):
    """``FROM`` the single-user image plus ``lines``: an image a user controls."""
    dockerfile = f"FROM {IMAGE}\n" + "\n".join(lines) + "\n"
    for _ in dclient.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, decode=True):
        pass
    return dclient.inspect_image(tag)["Id"]


def exec_in(dclient, container, cmd):
    exec_id = dclient.exec_create(container, cmd)
    out = dclient.exec_start(exec_id).decode(errors="replace")
    return dclient.exec_inspect(exec_id)["ExitCode"], out


def listening(dclient, container, address, port, timeout=30):
    """Whether something accepts connections on ``address:port`` as seen from ``container`` (waits up to ``timeout``)."""
    probe = (f"import socket; s = socket.socket(); s.settimeout(3); print(s.connect_ex(({address!r}, {port})))")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exec_in(dclient, container, ["python3", "-c", probe]) == (0, "0\n"):
            return True
        time.sleep(1)
    return False


def the_container(dclient, user):
    (c,) = containers_of(dclient, user)
    return dclient.inspect_container(c["Id"])


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, image):
    hub = Hub(tmp_path_factory.mktemp("attacks"), EXTRA).start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, hub.users)


@pytest.fixture(scope="module")
def images(dclient):
    tags = {
        "good": ["LABEL hs.attack=good"],
        "good2": ["LABEL hs.attack=good2"],
        "zero": ["USER 00"],
        "toor": ["USER root", "RUN echo 'toor:x:0:0::/root:/bin/sh' >> /etc/passwd", "USER toor"],
        "cuda": ["ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility"],
    }
    built = {name: build(dclient, f"hardened-spawner/attack-{name}:1", lines) for name, lines in tags.items()}
    yield built
    for name in tags:
        dclient.remove_image(f"hardened-spawner/attack-{name}:1", force=True)


def spawn(hub, user, image, timeout=150):
    events = hub.spawn_and_wait(user, {"image": image}, timeout=timeout)
    return events[-1]


@pytest.mark.parametrize("name, spelled", [("zero", "'00' (uid 0)"), ("toor", "'toor' (uid 0)")])
def test_uid_0_by_another_name_is_root(hub, dclient, images, name, spelled):
    """Hole 1: USER 00 and a passwd alias of uid 0 were admitted and ran as root."""
    user = f"atk-uid-{name}"
    last = spawn(hub, user, f"hardened-spawner/attack-{name}:1")
    assert last.get("failed") and f"The image runs as {spelled}" in last["message"], last
    assert containers_of(dclient, user) == []


def test_root_image_in_audit_mode_still_runs_as_a_numeric_non_root_uid(tmp_path, dclient, images):
    hub = Hub(tmp_path / "audit", EXTRA + "c.HardenedDockerSpawner.admission_rule_modes = "
              "{'image.user-root': 'audit', 'image.no-healthcheck': 'off'}\n").start()
    try:
        hub.users.add("atk-audit")
        assert spawn(hub, "atk-audit", "hardened-spawner/attack-toor:1").get("ready")
        container = the_container(dclient, "atk-audit")
        assert container["Config"]["User"] == "1000:100"
        assert exec_in(dclient, container["Id"], ["id", "-u"]) == (0, "1000\n")
    finally:
        hub.stop()
        remove_user_artifacts(dclient, hub.users)


def test_the_container_runs_the_admitted_image_id(hub, dclient, images):
    """Hole 2: containers were created from the tag, which can move after admission."""
    user = "atk-id"
    assert spawn(hub, user, "hardened-spawner/attack-good:1").get("ready")
    container = the_container(dclient, user)
    assert container["Image"] == images["good"] and container["Config"]["Image"] == images["good"]
    spawned = [e for e in hub.audit() if e["event"] == "spawn" and e["user"] == user][-1]
    assert spawned["image_id"] == images["good"]
    hub.stop_server(user)


def test_a_tag_moved_between_admission_and_create_does_not_change_what_runs(hub, dclient, images):
    """The tag moves after admission admitted it (the hub's own key fetch moves it): the container is
    still the admitted image, on the real daemon."""
    user, tag = "atk-race", "hardened-spawner/attack-race:1"
    dclient.tag("hardened-spawner/attack-good:1", *tag.split(":"), force=True)
    try:
        assert spawn(hub, user, tag).get("ready")
        assert dclient.inspect_image(tag)["Id"] == images["good2"]  # the tag really moved during the spawn
        container = the_container(dclient, user)
        assert container["Image"] == images["good"] and container["Config"]["Image"] == images["good"]
        admitted = [e for e in hub.audit() if e["event"] == "admission" and e["user"] == user][-1]
        assert admitted["image_id"] == images["good"]
        hub.stop_server(user)
    finally:
        dclient.remove_image(tag)


def test_a_tag_moved_while_stopped_recreates_the_container(hub, dclient, images):
    """Hole 3: with remove=False a stopped container restarted on content admission never saw."""
    user, tag = "atk-restart", "hardened-spawner/attack-moving:1"
    dclient.tag("hardened-spawner/attack-good:1", *tag.split(":"))
    try:
        assert spawn(hub, user, tag).get("ready")
        first = the_container(dclient, user)["Id"]
        hub.stop_server(user)
        dclient.tag("hardened-spawner/attack-good2:1", *tag.split(":"), force=True)  # a CI job re-tags
        assert spawn(hub, user, tag).get("ready")
        container = the_container(dclient, user)
        assert container["Id"] != first and container["Image"] == images["good2"]
        hub.stop_server(user)
    finally:
        dclient.remove_image(tag)


def test_cuda_images_do_not_get_every_gpu(hub, dclient, images):
    """Hole 7: a CUDA base's NVIDIA_VISIBLE_DEVICES=all reached CPU containers."""
    user = "atk-cuda"
    last = spawn(hub, user, "hardened-spawner/attack-cuda:1")
    assert last.get("ready"), last
    env = dict(e.split("=", 1) for e in the_container(dclient, user)["Config"]["Env"])
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
    admission = [e for e in hub.audit() if e["event"] == "admission" and e["user"] == user][-1]
    assert "image.gpu-env" in [f["rule"] for f in admission["findings"]]
    hub.stop_server(user)


def test_users_containers_cannot_reach_each_other(hub, dclient, images, tmp_path):
    """Hole 6: every server shared the default bridge; Bob reached Alice's notebook and sshd directly.
    Alice has a key, so her sshd really listens on 2222 (checked from inside her container)."""
    _, public = keygen(tmp_path, "alice")
    write_keys(hub.state / "ssh-keys", "atk-alice", [public])
    for user in ("atk-alice", "atk-bob"):
        assert spawn(hub, user, "hardened-spawner/attack-good:1").get("ready")
    alice = the_container(dclient, "atk-alice")
    bob = the_container(dclient, "atk-bob")
    assert listening(dclient, alice["Id"], "127.0.0.1", 2222), "Alice's sshd is not running: the probe would prove nothing"
    address = alice["NetworkSettings"]["Networks"]["hardened-spawner"]["IPAddress"]
    probe = ("import socket\nfor port in (8888, 2222):\n    s = socket.socket(); s.settimeout(3)\n"
             f"    try: print(port, s.connect_ex(({address!r}, port)))\n"
             "    except OSError as e: print(port, 'error', e)\n")
    code, out = exec_in(dclient, bob["Id"], ["python3", "-c", probe])
    assert code == 0 and "8888 0" not in out and "2222 0" not in out, out
    # the hub still reaches both servers (through the proxy)
    assert hub.user_get("atk-alice", "/api/status").status_code == 200
    for user in ("atk-alice", "atk-bob"):
        hub.stop_server(user)


def test_the_control_default_bridge_lets_them_meet(tmp_path, dclient, images):
    """The same probe on Docker's default bridge (isolation off) connects: the test above can see a hole."""
    hub = Hub(tmp_path / "open", EXTRA + "c.HardenedDockerSpawner.network_name = 'bridge'\n"
              "c.HardenedDockerSpawner.isolate_containers = False\n").start()
    try:
        _, public = keygen(tmp_path, "open-a")
        write_keys(hub.state / "ssh-keys", "atk-open-a", [public])
        for user in ("atk-open-a", "atk-open-b"):
            hub.users.add(user)
            assert spawn(hub, user, "hardened-spawner/attack-good:1").get("ready")
        address = the_container(dclient, "atk-open-a")["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        other = the_container(dclient, "atk-open-b")["Id"]
        assert listening(dclient, other, address, 8888, timeout=5)
        assert listening(dclient, other, address, 2222)  # the sshd half of the probe can see a hole too
    finally:
        hub.stop()
        remove_user_artifacts(dclient, hub.users)


def test_a_rendered_volume_template_cannot_reach_host_paths(tmp_path, dclient):
    """Hole 4: volume templates were checked before {username} was filled in ('/{username}' for user 'etc')."""
    hub = Hub(tmp_path / "tmpl", EXTRA + "c.HardenedDockerSpawner.volumes = {'/srv/{username}': '/mnt'}\n"
              "c.HardenedDockerSpawner.read_only_volumes = {'/{username}': '/host'}\n").start()
    try:
        last = spawn(hub, "etc", IMAGE)
        assert last.get("failed") and "/etc is under /etc, a sensitive host path" in last["message"], last
        assert containers_of(dclient, "etc") == []
    finally:
        hub.stop()
        remove_user_artifacts(dclient, hub.users | {"etc"})


def test_oversized_options_are_bounded_in_the_audit_log(hub, dclient):
    """Hole 13: raw user_options went into every audit line of a bad request."""
    user = "atk-big"
    r = hub.spawn(user, {"profile": "x" * 200_000, **{f"k{i}": "v" for i in range(500)}})
    assert r.status_code == 400
    line = [e for e in hub.audit() if e["event"] == "spawn.denied" and e["user"] == user][-1]
    assert len(json.dumps(line)) < 4000
    assert containers_of(dclient, user) == []
