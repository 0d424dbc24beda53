"""The per-user networks' host firewall (network_firewall = "iptables-raw") holds while networks churn.

Docker 20.10 deletes and re-inserts its jump to DOCKER-ISOLATION-STAGE-1 in FORWARD at
every network creation, and while it is missing a server on one bridge reaches another's
(benchmarks/isolation_churn.py). On the main daemon (iptables), a real hub with
``network_per_user`` and the firewall: two users' servers, Bob's sshd running; churners
create and remove bridge networks while a loop in Alice's server connects to Bob's
notebook port and sshd; none gets through, the hub still reaches both, and the hub's
chain goes with the last user's network. The pool is one no other test uses: the chain
only ever filters addresses of its own pool.
"""

import subprocess
import threading
import time

import docker
import pytest
from sshrig import Client, containers_of, keygen, module_hub, wait_for_sshd, write_keys

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.xdist_group("network-firewall")]

POOL = "10.203.0.0/16"
SETTINGS = ("c.HardenedDockerSpawner.network_per_user = True\n"
            f"c.HardenedDockerSpawner.network_pool = {POOL!r}\n"
            "c.HardenedDockerSpawner.network_firewall = 'iptables-raw'\n")
CHURN = {"hardened-spawner.churn-test": "true"}
SECONDS = 20
CHURNERS = 4
PROBE = """import socket, sys, time
end = time.monotonic() + float(sys.argv[2]); tries = hits = 0
while time.monotonic() < end:
    for port in (8888, 2222):
        s = socket.socket(); s.settimeout(0.2); tries += 1
        if s.connect_ex((sys.argv[1], port)) == 0:
            hits += 1
        s.close()
print(tries, hits)
"""


def raw_rules():
    return subprocess.run(["iptables", "-w", "-t", "raw", "-S"], check=True, capture_output=True, text=True).stdout


def remove_churn_networks(dclient):
    for n in dclient.networks(filters={"label": "hardened-spawner.churn-test=true"}):
        try:
            dclient.remove_network(n["Id"])
        except docker.errors.NotFound:
            pass


def churn(dclient, index, stop, counts):
    name = f"hs-fwchurn-{index}"
    while not stop.is_set():
        try:
            dclient.create_network(name, driver="bridge", labels=CHURN,
                                   ipam={"Driver": "default", "Config": [{"Subnet": f"10.204.{index}.0/28"}]})
            dclient.remove_network(name)
            counts[index] += 1
        except docker.errors.APIError:
            time.sleep(0.05)


@pytest.fixture(scope="module")
def users(tmp_path_factory, dclient, image):
    work = tmp_path_factory.mktemp("firewall")
    key, public = keygen(work, "bob")
    try:
        with module_hub(work / "hub", dclient, SETTINGS) as hub:
            write_keys(hub.state / "ssh-keys", "fwbob", [public])
            for user in ("fwalice", "fwbob"):
                assert hub.spawn(user).status_code in (201, 202)
            for user in ("fwalice", "fwbob"):
                assert hub.progress(user)[-1].get("ready"), hub.log()[-3000:]
            yield {"hub": hub, "bob": Client(hub, "fwbob", key, work)}
    finally:
        remove_churn_networks(dclient)


def server(dclient, user):
    (c,) = containers_of(dclient, user)
    (name, settings), = dclient.inspect_container(c["Id"])["NetworkSettings"]["Networks"].items()
    return c["Id"], name, settings["IPAddress"]


def test_no_connect_reaches_another_users_server_while_networks_churn(users, dclient):
    hub = users["hub"]
    assert wait_for_sshd(users["bob"], "fwbob").returncode == 0  # Bob's sshd runs
    alice, alice_net, _ = server(dclient, "fwalice")
    _, bob_net, bob_address = server(dclient, "fwbob")
    rules = raw_rules()
    for name in (alice_net, bob_net):
        info = dclient.inspect_network(name)
        subnet = info["IPAM"]["Config"][0]["Subnet"]
        assert f"-A HS-ISOLATION -d {subnet} -i br-{info['Id'][:12]} -j RETURN" in rules, rules
    assert "-A PREROUTING -j HS-ISOLATION" in rules and f"-A HS-ISOLATION ! -d {POOL} -j RETURN" in rules

    stop, counts = threading.Event(), [0] * CHURNERS
    threads = [threading.Thread(target=churn, args=(dclient, i, stop, counts)) for i in range(CHURNERS)]
    for t in threads:
        t.start()
    try:
        exec_id = dclient.exec_create(alice, ["python3", "-c", PROBE, bob_address, str(SECONDS)])
        out = dclient.exec_start(exec_id).decode()
    finally:
        stop.set()
        for t in threads:
            t.join()
    tries, hits = (int(n) for n in out.split())
    print(f"firewall on: {hits} of {tries} connects from Alice's server reached Bob's "
          f"(ports 8888, 2222; {sum(counts)} networks created and removed meanwhile)")
    assert sum(counts) >= 10 and tries >= 50, (counts, tries)  # a dropped connect takes its 0.2 s
    assert hits == 0, f"{hits} of {tries} connects from Alice's server reached Bob's notebook or sshd"
    for user in ("fwalice", "fwbob"):  # the hub (and its proxy) still reach both
        assert hub.user_get(user, "/api/status").status_code == 200
    assert wait_for_sshd(users["bob"], "fwbob").returncode == 0  # and the gateway Bob's sshd
    assert any(e["event"] == "network.firewall" and e.get("networks", 0) >= 2 for e in hub.audit())


def test_the_rules_go_with_the_users_networks(users, dclient):
    hub = users["hub"]
    _, bob_net, _ = server(dclient, "fwbob")
    bob_bridge = "br-" + dclient.inspect_network(bob_net)["Id"][:12]
    hub.stop_server("fwbob")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and bob_bridge in raw_rules():
        time.sleep(0.5)
    assert bob_bridge not in raw_rules()
    assert "HS-ISOLATION" in raw_rules()  # Alice's network keeps its rule
    hub.stop_server("fwalice")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "HS-ISOLATION" in raw_rules():
        time.sleep(0.5)
    assert "HS-ISOLATION" not in raw_rules(), raw_rules()
    assert not [n for n in dclient.networks(filters={"label": "hardened-spawner.network=per-user"})
                if n["Name"] in ("hardened-spawner-fwalice", "hardened-spawner-fwbob")]


def test_the_watcher_writes_the_chain_for_each_network_and_removes_it_after_the_last(dclient):
    """``hardened-spawner firewall --watch`` (a hub in a container): the same chain, kept from outside."""
    import os
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).with_name("hardened-spawner"))
    watcher = subprocess.Popen([cli, "firewall", "--pool", "10.207.0.0/16", "--watch", "--resync", "5"],
                               env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert watcher.stdout.readline().startswith("firewall: 0 per-user networks")  # its first write, done
        made = dclient.create_network("hs-fwwatch", driver="bridge", labels=CHURN,
                                      ipam={"Driver": "default", "Config": [{"Subnet": "10.207.0.0/28"}]})
        rule = f"-A HS-ISOLATION -d 10.207.0.0/28 -i br-{made['Id'][:12]} -j RETURN"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and rule not in raw_rules():
            time.sleep(0.2)
        assert rule in raw_rules(), raw_rules()
        dclient.remove_network(made["Id"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "HS-ISOLATION" in raw_rules():
            time.sleep(0.2)
        assert "HS-ISOLATION" not in raw_rules(), raw_rules()
    finally:
        watcher.terminate()
        watcher.wait(10)
        remove_churn_networks(dclient)
        subprocess.run([cli, "firewall", "--pool", "10.207.0.0/16", "--clear"], check=True)
