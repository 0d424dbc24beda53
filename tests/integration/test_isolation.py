"""Isolation is proved, not assumed (issue 22): the hub's two probe containers, on real daemons.

- A daemon run with ``--iptables=false`` (the rig's non-main daemons run that way) keeps
  every network setting and enforces none: the hub's probes reach each other, and the
  spawn is refused (shared layout and per-user layout), nothing left behind.
- On the main daemon (iptables), per-user networks: two users' servers, each on a network
  of its own, proved before the first spawn; Bob's server reaches neither Alice's notebook
  port nor her running sshd; the hub reaches both; each network goes with its last server.
"""

import subprocess
import time

import docker
import pytest
from sshrig import Client, keygen, module_hub, wait_for_sshd, write_keys

from conftest import containers_of
from hubrig import IMAGE, REPO, Hub, remove_user_artifacts

pytestmark = [pytest.mark.docker, pytest.mark.hub]

PER_USER = "c.HardenedDockerSpawner.network_per_user = True\n"
PROBES = {"label": "hardened-spawner.isolation-probe=true"}


@pytest.fixture(scope="module")
def open_daemon(dclient, image):
    """A second rig daemon (--iptables=false) with the single-user image loaded."""
    rig = str(REPO / "rig" / "dockerd.sh")
    sock = subprocess.run(["bash", rig, "start", "noiptables", "--no-gpu-hook"],
                          check=True, capture_output=True, text=True).stdout.strip()
    try:
        client = docker.APIClient(base_url=f"unix://{sock}", version="auto")
        try:
            client.inspect_image(IMAGE)
        except docker.errors.ImageNotFound:
            client.load_image(dclient.get_image(IMAGE))
        yield sock, client
    finally:
        subprocess.run(["bash", rig, "stop", "noiptables"], check=True)


@pytest.mark.parametrize("layout", ["shared", "per-user"])
def test_a_daemon_without_iptables_is_refused_by_the_probes(tmp_path, open_daemon, layout):
    sock, client = open_daemon
    user = f"iso-open-{layout}"
    hub = Hub(tmp_path / "hub", PER_USER if layout == "per-user" else "",
              env={"DOCKER_HOST": f"unix://{sock}", "HS_HUB_IP": "0.0.0.0"}).start()
    try:
        r = hub.spawn(user)
        assert r.status_code in (201, 202, 503), r.text
        last = r.json() if r.status_code == 503 else hub.progress(user)[-1]
        assert last.get("reason") == "network-not-isolated", last
        assert "does not keep containers apart: a probe container on" in last["message"]
        assert "--iptables=false isolates nothing" in last["message"]
        (event,) = [e for e in hub.audit() if e["event"] == "network.not-isolated"]
        assert "reached a probe container" in event["problem"]
        assert containers_of(client, user) == []
        assert client.containers(all=True, filters=PROBES) == []
    finally:
        hub.stop()
        remove_user_artifacts(client, {user})


@pytest.fixture(scope="module")
def per_user(tmp_path_factory, dclient, image):
    work = tmp_path_factory.mktemp("isolation")
    key, public = keygen(work, "alice")
    with module_hub(work / "hub", dclient, PER_USER) as hub:
        write_keys(hub.state / "ssh-keys", "iso-alice", [public])
        for user in ("iso-alice", "iso-bob"):
            assert hub.spawn(user).status_code in (201, 202)
        for user in ("iso-alice", "iso-bob"):
            assert hub.progress(user)[-1].get("ready"), hub.log()[-3000:]
        yield {"hub": hub, "alice": Client(hub, "iso-alice", key, work)}


def network_of(dclient, user):
    (c,) = containers_of(dclient, user)
    networks = dclient.inspect_container(c["Id"])["NetworkSettings"]["Networks"]
    (name,) = networks
    return name, networks[name]["IPAddress"], c["Id"]


def test_each_user_has_a_network_proved_before_the_first_spawn(per_user, dclient):
    alice, bob = network_of(dclient, "iso-alice"), network_of(dclient, "iso-bob")
    assert (alice[0], bob[0]) == ("hardened-spawner-iso-alice", "hardened-spawner-iso-bob")
    info = dclient.inspect_network(alice[0])
    assert info["Labels"]["hardened-spawner.network"] == "per-user"
    assert info["IPAM"]["Config"][0]["Subnet"].endswith("/28")
    proved = [e["network"] for e in per_user["hub"].audit() if e["event"] == "network.isolated"]
    assert sorted(proved) == [alice[0], bob[0]]
    assert dclient.containers(all=True, filters=PROBES) == []


def test_bob_reaches_neither_alices_notebook_nor_her_sshd(per_user, dclient):
    assert wait_for_sshd(per_user["alice"], "iso-alice").returncode == 0  # her sshd runs
    _, address, _ = network_of(dclient, "iso-alice")
    _, _, bob = network_of(dclient, "iso-bob")
    probe = ("import socket\nfor port in (8888, 2222):\n    s = socket.socket(); s.settimeout(3)\n"
             f"    print(port, s.connect_ex(({address!r}, port)))\n")
    exec_id = dclient.exec_create(bob, ["python3", "-c", probe])
    out = dclient.exec_start(exec_id).decode()
    assert dclient.exec_inspect(exec_id)["ExitCode"] == 0 and "8888 0" not in out and "2222 0" not in out, out
    for user in ("iso-alice", "iso-bob"):  # the hub (and its proxy) reaches both
        assert per_user["hub"].user_get(user, "/api/status").status_code == 200


def test_a_users_network_goes_with_their_last_server(per_user, dclient):
    hub = per_user["hub"]
    hub.stop_server("iso-bob")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and dclient.networks(names=["hardened-spawner-iso-bob"]):
        time.sleep(0.5)
    assert not [n for n in dclient.networks(names=["hardened-spawner-iso-bob"])
                if n["Name"] == "hardened-spawner-iso-bob"]
    assert any(e["event"] == "network.removed" and e["network"] == "hardened-spawner-iso-bob" for e in hub.audit())
    assert dclient.inspect_network("hardened-spawner-iso-alice")  # hers stays while her server runs
