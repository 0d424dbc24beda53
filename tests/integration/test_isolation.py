"""Isolation is proved, not assumed (issue 22): the hub's two probe containers, on real daemons.

- A daemon run with ``--iptables=false`` keeps every network setting and enforces none. On
  this rig the main daemon's ``FORWARD DROP`` policy (and br_netfilter) still filters the
  other daemons' bridges, which a host running only an ``--iptables=false`` daemon does not
  have; so the module opens the subnets it gives that daemon in ``DOCKER-USER`` (the chain
  Docker leaves to admins), the firewall of such a host. The hub's probes then reach each
  other and the spawn is refused (shared layout and per-user layout), nothing left behind.
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
OPEN_POOL = "10.251.0.0/16"  # the --iptables=false daemon's server networks, and nothing else
OPEN_RULE = ["DOCKER-USER", "-s", OPEN_POOL, "-d", OPEN_POOL, "-j", "ACCEPT"]


@pytest.fixture(scope="module")
def open_daemon(dclient, image):
    """A second rig daemon (--iptables=false) with the single-user image, on a host firewall that lets it be."""
    rig = str(REPO / "rig" / "dockerd.sh")
    sock = subprocess.run(["bash", rig, "start", "noiptables", "--no-gpu-hook"],
                          check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run(["iptables", "-I", *OPEN_RULE], check=True)
    try:
        client = docker.APIClient(base_url=f"unix://{sock}", version="auto")
        try:
            client.inspect_image(IMAGE)
        except docker.errors.ImageNotFound:
            client.load_image(dclient.get_image(IMAGE))
        yield sock, client
    finally:
        subprocess.run(["iptables", "-D", *OPEN_RULE], check=True)
        subprocess.run(["bash", rig, "stop", "noiptables"], check=True)


@pytest.mark.parametrize("layout", ["shared", "per-user"])
def test_a_daemon_without_iptables_is_refused_by_the_probes(tmp_path, open_daemon, layout):
    sock, client = open_daemon
    user = f"iso-open-{layout}"
    if layout == "shared":  # made as the hub makes it (inter-container communication off), in the open pool
        for n in client.networks(names=["hardened-spawner"]):
            client.remove_network(n["Id"])
        client.create_network("hardened-spawner", driver="bridge", labels={"hardened-spawner.managed": "true"},
                              options={"com.docker.network.bridge.enable_icc": "false"},
                              ipam={"Driver": "default", "Config": [{"Subnet": "10.251.255.0/24"}]})
        extra = ""
    else:
        extra = PER_USER + f"c.HardenedDockerSpawner.network_pool = {OPEN_POOL!r}\n"
    hub = Hub(tmp_path / "hub", extra, env={"DOCKER_HOST": f"unix://{sock}", "HS_HUB_IP": "0.0.0.0"}).start()
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
        assert client.networks(filters=PROBES) == []
        if layout == "per-user":  # the user's network, made for the refused spawn, is gone too
            assert not client.networks(filters={"label": "hardened-spawner.network=per-user"})
    finally:
        hub.stop()
        remove_user_artifacts(client, {user})


@pytest.fixture(scope="module")
def per_user(tmp_path_factory, dclient, image):
    work = tmp_path_factory.mktemp("isolation")
    key, public = keygen(work, "alice")
    with module_hub(work / "hub", dclient, PER_USER) as hub:
        write_keys(hub.state / "ssh-keys", "isoalice", [public])
        for user in ("isoalice", "isobob"):
            assert hub.spawn(user).status_code in (201, 202)
        for user in ("isoalice", "isobob"):
            assert hub.progress(user)[-1].get("ready"), hub.log()[-3000:]
        yield {"hub": hub, "alice": Client(hub, "isoalice", key, work)}


def network_of(dclient, user):
    (c,) = containers_of(dclient, user)
    networks = dclient.inspect_container(c["Id"])["NetworkSettings"]["Networks"]
    (name,) = networks
    return name, networks[name]["IPAddress"], c["Id"]


def test_each_user_has_a_network_proved_before_the_first_spawn(per_user, dclient):
    alice, bob = network_of(dclient, "isoalice"), network_of(dclient, "isobob")
    assert (alice[0], bob[0]) == ("hardened-spawner-isoalice", "hardened-spawner-isobob")
    info = dclient.inspect_network(alice[0])
    assert info["Labels"]["hardened-spawner.network"] == "per-user"
    assert info["IPAM"]["Config"][0]["Subnet"].endswith("/28")
    proved = [e["network"] for e in per_user["hub"].audit() if e["event"] == "network.isolated"]
    assert sorted(proved) == [alice[0], bob[0]]
    # This hub's probes only: other modules' hubs prove their own networks on the same daemon meanwhile.
    made = [e["network"] for e in per_user["hub"].audit() if e["event"] == "network.created" and e["layout"] == "probe"]
    assert len(made) == 2
    assert dclient.containers(all=True, filters={**PROBES, "network": [alice[0], bob[0], *made]}) == []
    assert [n["Name"] for n in dclient.networks(filters=PROBES) if n["Name"] in made] == []


def test_bob_reaches_neither_alices_notebook_nor_her_sshd(per_user, dclient):
    assert wait_for_sshd(per_user["alice"], "isoalice").returncode == 0  # her sshd runs
    _, address, _ = network_of(dclient, "isoalice")
    _, _, bob = network_of(dclient, "isobob")
    probe = ("import socket\nfor port in (8888, 2222):\n    s = socket.socket(); s.settimeout(3)\n"
             f"    print(port, s.connect_ex(({address!r}, port)))\n")
    exec_id = dclient.exec_create(bob, ["python3", "-c", probe])
    out = dclient.exec_start(exec_id).decode()
    assert dclient.exec_inspect(exec_id)["ExitCode"] == 0 and "8888 0" not in out and "2222 0" not in out, out
    for user in ("isoalice", "isobob"):  # the hub (and its proxy) reaches both
        assert per_user["hub"].user_get(user, "/api/status").status_code == 200


def test_a_users_network_goes_with_their_last_server(per_user, dclient):
    hub = per_user["hub"]
    hub.stop_server("isobob")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and dclient.networks(names=["hardened-spawner-isobob"]):
        time.sleep(0.5)
    assert not [n for n in dclient.networks(names=["hardened-spawner-isobob"])
                if n["Name"] == "hardened-spawner-isobob"]
    assert any(e["event"] == "network.removed" and e["network"] == "hardened-spawner-isobob" for e in hub.audit())
    assert dclient.inspect_network("hardened-spawner-isoalice")  # hers stays while her server runs


async def test_twenty_networks_made_at_once_each_get_a_subnet_of_their_own(dclient):
    """Twenty users' first spawns at once (benchmarks/deployment_soak.py): every network is made, each with
    a subnet of its own. Without the process-wide reservation each creation took the same first free subnet,
    one won per round and most gave up after eight ('network-busy')."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from hardened_spawner.spawner import clients
    from hardened_spawner.spawner.networks import ServerNetwork

    spawner = SimpleNamespace(network_pool="10.199.0.0/23", network_prefix_length=28, network_firewall=None)
    networks = ServerNetwork(clients.DockerIO(dclient, ThreadPoolExecutor(20)), clients.flights(),
                             SimpleNamespace(write=lambda *args, **fields: None))
    names = [f"hardened-spawner-probe-burst{i:02d}" for i in range(20)]
    try:
        made = await asyncio.gather(*(networks._per_user(spawner, name, probe=True) for name in names))
        subnets = [network["IPAM"]["Config"][0]["Subnet"] for network in made]
        assert len(set(subnets)) == 20 and all(s.startswith("10.199.") for s in subnets), subnets
    finally:
        for name in names:
            try:
                dclient.remove_network(name)
            except docker.errors.NotFound:
                pass
