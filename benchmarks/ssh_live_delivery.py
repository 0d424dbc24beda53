"""SSH key live delivery: how long from "add key" to a working login, and from "remove" to refusal.

Starts one real hub (the repository's jupyterhub_config.py: file key store,
the SSH keys service, the gateway), starts one server without any key, then
repeats: add a fresh ed25519 key through the keys service's REST API and time
until real OpenSSH logs in through the gateway; hold a session open, remove
the key and time until the session is closed and a new login is refused.
The first round includes sshd's start (the entry point waits for the first
key); later rounds only the file rewrite. Run under the rig's daemon:

    DOCKER_HOST=unix:///run/hardened-spawner-rig/main/docker.sock \\
        python3 benchmarks/ssh_live_delivery.py --rounds 10
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from sshrig import Client, keygen, keys_api, module_hub  # noqa: E402

USER = "bench-ssh"


def until(check, timeout=120.0, interval=0.1):
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise RuntimeError("timed out")
        time.sleep(interval)
    return time.perf_counter() - start


def one_round(hub, work, n):
    key, public = keygen(work, f"k{n}")
    client = Client(hub, USER, key, work)
    start = time.perf_counter()
    r = keys_api(hub, "POST", USER, json={"key": public})
    assert r.status_code == 201 and r.json()["delivered"][0]["ok"], r.text
    api = time.perf_counter() - start
    usable = api + until(lambda: client.ssh(USER, "true").returncode == 0)
    session = subprocess.Popen(["ssh", "-F", str(client.config), USER, "echo open; sleep 600"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert session.stdout.readline().strip() == "open"
    start = time.perf_counter()
    assert keys_api(hub, "DELETE", USER, r.json()["key"]["fingerprint"]).status_code == 200
    refused = time.perf_counter() - start
    assert client.ssh(USER, "true").returncode == 255
    closed = refused + until(lambda: session.poll() is not None, timeout=60)
    session.kill()
    return api, usable, refused, closed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    dclient = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with module_hub(work / "hub", dclient) as hub:
            events = hub.spawn_and_wait(USER)
            assert hub.server(USER)["ready"], events
            rows = [one_round(hub, work, n) for n in range(args.rounds)]
    names = ("API add answered", "add -> first ssh login", "API remove answered", "remove -> open session closed")
    print(f"rounds: {args.rounds}; 1-min load {os.getloadavg()[0]:.1f}")
    print(f"first round (includes sshd start): add -> login {rows[0][1]:.2f} s")
    for i, name in enumerate(names):
        values = [row[i] for row in rows[1:]] or [rows[0][i]]
        print(f"{name}: median {statistics.median(values):.2f} s, min {min(values):.2f}, max {max(values):.2f}")


if __name__ == "__main__":
    main()
