"""Do Docker's bridge isolation rules hold while other networks are created and removed?

The deployment soak saw 2 in ~200 isolation proofs fail under churn (benchmarks/README.md).
This reproduces the situation without the hub: a listener on bridge A, a prober on
bridge B connecting to it in a tight loop (each connect 0.2 s at most), first for
``--seconds`` with nothing else happening, then as long again while ``--churners``
threads create and remove bridge networks (what 20 users starting and stopping do).
It prints how many connects got through in each phase.

Needs a daemon that manages iptables (the rig's main daemon):
  DOCKER_HOST=unix:///run/hardened-spawner-rig/main/docker.sock python benchmarks/isolation_churn.py
Everything it makes carries the label hardened-spawner.churn-test and is removed at the end.
"""

import argparse
import threading
import time

import docker

LABEL = {"hardened-spawner.churn-test": "true"}
PORT = 47299
LISTEN = ("import socket\ns = socket.socket()\ns.bind(('0.0.0.0', %d))\ns.listen(64)\n"
          "while True:\n    c, _ = s.accept()\n    c.close()\n" % PORT)
PROBE = """import socket, sys, time
end = time.monotonic() + float(sys.argv[2]); tries = hits = 0
while time.monotonic() < end:
    s = socket.socket(); s.settimeout(0.2); tries += 1
    if s.connect_ex((sys.argv[1], %d)) == 0:
        hits += 1
    s.close()
print(tries, hits)
""" % PORT


def bridge(client, name, subnet):
    return client.create_network(name, driver="bridge", labels=LABEL,
                                 ipam={"Driver": "default", "Config": [{"Subnet": subnet}]})["Id"]


def run(client, image, network, code, *args):
    host = client.create_host_config(network_mode=network, cap_drop=["ALL"])
    c = client.create_container(image, entrypoint=["python3", "-c", code], command=list(args),
                                labels=LABEL, host_config=host)
    client.start(c["Id"])
    return c["Id"]


def probe(client, image, address, seconds):
    c = run(client, image, "hs-churn-b", PROBE, address, str(seconds))
    client.wait(c, timeout=seconds + 60)
    tries, hits = client.logs(c).decode().split()
    return int(tries), int(hits)


def churn(client, index, stop, counts):
    while not stop.is_set():
        name = f"hs-churn-c{index}"
        try:
            bridge(client, name, f"10.197.{1 + index}.0/28")
            client.remove_network(name)
            counts[index] += 1
        except docker.errors.APIError:
            time.sleep(0.05)


def cleanup(client):
    for c in client.containers(all=True, filters={"label": "hardened-spawner.churn-test=true"}):
        client.remove_container(c["Id"], force=True)
    for n in client.networks(filters={"label": "hardened-spawner.churn-test=true"}):
        client.remove_network(n["Id"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", default="hardened-spawner/singleuser:local")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--churners", type=int, default=4)
    args = parser.parse_args()
    client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    cleanup(client)
    try:
        bridge(client, "hs-churn-a", "10.197.0.0/28")
        bridge(client, "hs-churn-b", "10.197.0.16/28")
        listener = run(client, args.image, "hs-churn-a", LISTEN)
        time.sleep(2)
        address = client.inspect_container(listener)["NetworkSettings"]["Networks"]["hs-churn-a"]["IPAddress"]
        quiet = probe(client, args.image, address, args.seconds)
        print(f"quiet:    {quiet[1]} of {quiet[0]} connects from B reached A")
        stop, counts = threading.Event(), [0] * args.churners
        threads = [threading.Thread(target=churn, args=(client, i, stop, counts)) for i in range(args.churners)]
        for t in threads:
            t.start()
        try:
            busy = probe(client, args.image, address, args.seconds)
        finally:
            stop.set()
            for t in threads:
                t.join()
        print(f"churning: {busy[1]} of {busy[0]} connects from B reached A "
              f"({sum(counts)} networks created and removed meanwhile)")
    finally:
        cleanup(client)


if __name__ == "__main__":
    main()
