"""Issue 22 item 4 on Swarm: each user's tasks on an overlay of their own, the hub's container on each.

A real two-node swarm (rig/swarm.sh). The hub runs as in a container on the
manager: its processes (hub, proxy, SSH gateway) run in the network namespace
of a container there (``nsenter --net``), which the hub joins to every user's
overlay (``network_peers``); the test reaches its public and gateway ports,
published on the manager, through two loopback forwarders. Profiles pin
tasks to nodes, so Bob (worker) attacks Alice (manager) across nodes and
Carol (worker) attacks Bob on the same node.
"""

import socket
import threading
import time

import pytest

from hubrig import Hub, free_port, remove_user_artifacts
from sshrig import Client, keygen, write_keys
from swarmrig import running_swarm

pytestmark = [pytest.mark.docker, pytest.mark.hub]

PEER = "hs-swarm-isolation-hub"
POOL = "10.131.0.0/16"
PROBES = {"label": "hardened-spawner.isolation-probe=true"}
USERS = {"ovalice": "manager", "ovbob": "worker", "ovcarol": "worker"}


def config(image, peers, hub_port=None):
    """``hub_port``: the hub runs in the peer's network namespace; its own processes reach its API on
    loopback, servers at the peer's alias on their overlay."""
    inside = (f"c.JupyterHub.hub_connect_url = 'http://127.0.0.1:{hub_port}'\n"
              f"c.HardenedSwarmSpawner.hub_connect_url = 'http://hub:{hub_port}'\n") if hub_port else ""
    return inside + f"""
c.JupyterHub.spawner_class = 'hardened-swarm'
c.HardenedSwarmSpawner.network_per_user = True
c.HardenedSwarmSpawner.network_peers = {peers!r}
c.HardenedSwarmSpawner.network_pool = {POOL!r}
c.HardenedSwarmSpawner.http_timeout = 300
c.HardenedSwarmSpawner.start_timeout = 360
c.HardenedSwarmSpawner.profiles = [
    {{'slug': 'manager', 'display_name': 'On the manager', 'default': True}},
    {{'slug': 'worker', 'display_name': 'On the worker'}},
]
c.HardenedSwarmSpawner.placement_constraints = {{'manager': ['node.role == manager'],
                                                'worker': ['node.role == worker']}}
c.HardenedDockerSpawner.allowed_images = {{'default': {image!r}}}
"""


def forward(port, host):
    """127.0.0.1:port -> host:port, for the life of the test process (the hub's ports, published on a node)."""
    server = socket.create_server(("127.0.0.1", port))

    def pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        while True:
            client, _ = server.accept()
            try:
                upstream = socket.create_connection((host, port), 10)
            except OSError:
                client.close()
                continue
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


def leftovers(manager, users):
    for user in users:
        for service in manager.services(filters={"label": f"hardened-spawner.owner={user}"}):
            manager.remove_service(service["ID"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = manager.networks(filters={"label": "hardened-spawner.network"})
        for network in left:
            try:
                manager.remove_network(network["Id"])
            except Exception:
                pass
        if not left:
            return
        time.sleep(1)


@pytest.fixture(scope="module")
def swarm():
    yield from running_swarm()


@pytest.fixture(scope="module")
def hub(swarm, tmp_path_factory):
    env, clients = swarm
    manager = clients["manager"]
    hub_port = free_port()
    hub = Hub(tmp_path_factory.mktemp("swarm-iso-hub"), config(env["HS_SWARM_IMAGE"], [PEER], hub_port), env={
        "DOCKER_HOST": env["HS_SWARM_MANAGER"], "HS_HUB_IP": "0.0.0.0", "HS_HUB_PORT": str(hub_port),
        "HS_SSH_GATEWAY_IP": "0.0.0.0", "HS_SINGLEUSER_IMAGE": env["HS_SWARM_IMAGE"],
    })
    public, gateway = int(hub.url.rsplit(":", 1)[1]), int(hub.env["HS_SSH_GATEWAY_PORT"])
    hub.env["HS_BIND_URL"] = f"http://0.0.0.0:{public}"
    peer = manager.create_container(
        "hardened-spawner/singleuser:local", ["sleep", "infinity"], name=PEER, ports=[public, gateway],
        host_config=manager.create_host_config(port_bindings={public: public, gateway: gateway}))
    servers = []
    try:
        manager.start(peer["Id"])
        pid = manager.inspect_container(peer["Id"])["State"]["Pid"]
        hub.command_prefix = ["nsenter", f"--net=/proc/{pid}/ns/net"]
        node = manager.info()["Swarm"]["NodeAddr"]
        servers = [forward(public, node), forward(gateway, node)]
        hub.start(timeout=120)
        yield hub
    finally:
        hub.stop()
        for server in servers:
            server.close()
        leftovers(manager, hub.users)
        manager.remove_container(peer["Id"], force=True)
        for client in clients.values():
            remove_user_artifacts(client, hub.users)


def service_of(clients, user):
    (service,) = clients["manager"].services(filters={"label": f"hardened-spawner.owner={user}"})
    return service


def task_of(clients, user):
    """(node client, container id, overlay address) of the user's running task."""
    manager = clients["manager"]
    (task,) = manager.tasks(filters={"service": service_of(clients, user)["ID"], "desired-state": "running"})
    node = {c.info()["Swarm"]["NodeID"]: c for c in clients.values()}[task["NodeID"]]
    (address,) = [a["Addresses"][0].split("/")[0] for a in task["NetworksAttachments"]
                  if a["Network"]["Spec"]["Name"] == f"hardened-spawner-{user}"]
    return node, task["Status"]["ContainerStatus"]["ContainerID"], address


def reach(node, container, address):
    probe = ("import socket\nfor port in (8888, 2222):\n    s = socket.socket(); s.settimeout(3)\n"
             f"    print(port, s.connect_ex(({address!r}, port)))\n")
    exec_id = node.exec_create(container, ["python3", "-c", probe])
    out = node.exec_start(exec_id).decode()
    assert node.exec_inspect(exec_id)["ExitCode"] == 0, out
    return out


@pytest.fixture(scope="module")
def spawned(hub, swarm, tmp_path_factory):
    keys = {}
    directory = tmp_path_factory.mktemp("swarm-iso-keys")
    for user, profile in USERS.items():
        key, public = keygen(directory, user)
        write_keys(hub.state / "ssh-keys", user, [public])
        keys[user] = key
        events = hub.spawn_and_wait(user, {"profile": profile}, timeout=400)
        assert events[-1].get("ready"), events
    return keys


def test_each_user_has_an_attachable_overlay_of_their_own_proved_before_the_first_spawn(hub, swarm, spawned):
    env, clients = swarm
    manager = clients["manager"]
    subnets = set()
    for user, profile in USERS.items():
        network = manager.inspect_network(f"hardened-spawner-{user}")
        assert network["Driver"] == "overlay" and network["Attachable"] and network["Scope"] == "swarm"
        assert network["Labels"]["hardened-spawner.owner"] == user
        subnets.add(network["IPAM"]["Config"][0]["Subnet"])
        targets = [n["Target"] for n in service_of(clients, user)["Spec"]["TaskTemplate"]["Networks"]]
        assert targets == [network["Id"]]  # the task is on the user's overlay and nothing else
        assert service_of(clients, user)["Spec"].get("EndpointSpec", {}).get("Ports") in (None, [])  # none published
        assert any(c["Name"] == PEER for c in network["Containers"].values())  # the hub joined it
        node, _, _ = task_of(clients, user)
        assert node.info()["Swarm"]["ControlAvailable"] is (profile == "manager")
    assert len(subnets) == 3 and all(s.startswith("10.131.") for s in subnets), subnets
    proved = [e["network"] for e in hub.audit() if e["event"] == "network.isolated"]
    assert sorted(proved) == sorted(f"hardened-spawner-{u}" for u in USERS), proved
    assert manager.containers(all=True, filters=PROBES) == []
    assert gone(manager, filters=PROBES)


def test_users_reach_neither_each_others_notebook_nor_sshd_across_nodes_or_on_one(hub, swarm, spawned, tmp_path):
    _, clients = swarm
    for attacker, victim in (("ovbob", "ovalice"), ("ovcarol", "ovbob")):  # worker -> manager; worker -> worker
        node, container, _ = task_of(clients, attacker)
        _, _, address = task_of(clients, victim)
        out = reach(node, container, address)
        assert "8888 0" not in out and "2222 0" not in out, f"{attacker} reached {victim}: {out}"
    for user in USERS:  # the hub's proxy reaches every notebook, its gateway every sshd
        assert hub.user_get(user, "/api/status").status_code == 200
        result = Client(hub, user, spawned[user], tmp_path).ssh(user, "id -u")
        assert result.returncode == 0 and result.stdout.split() == ["1000"], result.stderr


def gone(manager, name=None, filters=None, seconds=30):
    """Whether the network ``name`` (or every network matching ``filters``) is gone within ``seconds``: a
    manager lists a removed overlay for a moment after the removal returned."""
    deadline = time.monotonic() + seconds
    while True:
        left = [n for n in manager.networks(filters=filters or {"name": name}) if not name or n["Name"] == name]
        if not left or time.monotonic() > deadline:
            return not left
        time.sleep(0.5)


def test_a_users_overlay_goes_with_their_last_server(hub, swarm, spawned):
    _, clients = swarm
    manager = clients["manager"]
    hub.stop_server("ovcarol")
    assert gone(manager, "hardened-spawner-ovcarol", seconds=60)
    assert any(e["event"] == "network.removed" and e["network"] == "hardened-spawner-ovcarol" for e in hub.audit())
    assert manager.inspect_network("hardened-spawner-ovalice")  # hers stays while her server runs


def test_a_hub_that_is_not_on_the_overlay_is_refused_and_nothing_is_left(swarm, tmp_path):
    """A hub on the host (not in network_peers' container) cannot reach the overlay: the probe says so."""
    env, clients = swarm
    manager = clients["manager"]
    bystander = manager.create_container("hardened-spawner/singleuser:local", ["sleep", "infinity"],
                                         name="hs-swarm-isolation-bystander")
    hub = Hub(tmp_path / "host-hub", config(env["HS_SWARM_IMAGE"], ["hs-swarm-isolation-bystander"]), env={
        "DOCKER_HOST": env["HS_SWARM_MANAGER"], "HS_HUB_IP": env["HS_SWARM_HOST_IP"],
        "HS_SINGLEUSER_IMAGE": env["HS_SWARM_IMAGE"]})
    try:
        manager.start(bystander["Id"])
        hub.start(timeout=120)
        events = hub.spawn_and_wait("ovdave", timeout=300)
        assert events[-1].get("failed"), events
        assert "does not keep containers apart: the hub itself cannot reach a container on it" in \
            events[-1]["message"], events[-1]
        assert manager.services(filters={"label": "hardened-spawner.owner=ovdave"}) == []
        assert manager.containers(all=True, filters=PROBES) == []
        assert gone(manager, "hardened-spawner-ovdave") and gone(manager, filters=PROBES)
    finally:
        hub.stop()
        leftovers(manager, hub.users)
        manager.remove_container(bystander["Id"], force=True)
