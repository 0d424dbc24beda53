"""Revocation over SSH: from removal at the identity provider to the open session closed, no hub page visited.

Starts the real OpenID Connect provider (rig/oidc.sh) and one real hub (the
repository's jupyterhub_config.py with HardenedOAuthenticator, the SSH gateway
and keys service), then repeats: the user logs in through the IdP's form (the
only hub request of their browser), the admin service starts their server,
real OpenSSH holds a session through the gateway; after a random wait (so the
removal falls anywhere in the re-check schedule) the user is removed from
every group at the IdP, and the script times until the session is closed and
until a new login is refused. Run under the rig's daemon:

    DOCKER_HOST=unix:///run/hardened-spawner-rig/main/docker.sock \\
        python3 benchmarks/ssh_revocation.py --rounds 8 --interval 5
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from oidcrig import IdP, hub_env, login  # noqa: E402
from sshrig import Client, keygen, module_hub, wait_for_sshd, write_keys  # noqa: E402

USER = "bench-revoke"


def until(check, timeout=300.0, interval=0.1):
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise RuntimeError("timed out")
        time.sleep(interval)
    return time.perf_counter() - start


def one_round(hub, idp, client, interval):
    idp.set_user(USER, ["staff"])
    _, landed = login(hub, USER)  # clears the withdrawal of the round before
    assert landed.status_code == 302, landed.text
    until(lambda: hub.server(USER) is None)  # the last round's server is stopped
    assert hub.spawn_and_wait(USER)[-1].get("ready")
    assert wait_for_sshd(client, USER).returncode == 0
    session = subprocess.Popen(["ssh", "-F", str(client.config), USER, "echo open; sleep 900"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert session.stdout.readline().strip() == "open"
    time.sleep(random.uniform(0, interval))
    idp.set_user(USER, [])  # removed from every group at the identity provider
    closed = until(lambda: session.poll() is not None)
    refused = closed + until(lambda: client.ssh(USER, "true").returncode == 255)
    session.kill()
    return closed, refused


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--interval", type=float, default=5.0, help="entitlement_check_interval, seconds")
    parser.add_argument("--recheck", type=float, default=1.0, help="the gateway's recheck_interval, seconds")
    args = parser.parse_args()
    dclient = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    extra = (f"c.HardenedOAuthenticator.entitlement_check_interval = {args.interval}\n"
             f"c.SSHGateway.recheck_interval = {args.recheck}\n")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        idp = IdP(work / "idp.log", token_max_age=60).start()
        try:
            with module_hub(work / "hub", dclient, extra, env=hub_env(idp)) as hub:
                hub.users.add(USER)
                key, public = keygen(work, "revoke")
                write_keys(hub.state / "ssh-keys", USER, [public])
                client = Client(hub, USER, key, work)
                rows = [one_round(hub, idp, client, args.interval) for _ in range(args.rounds)]
        finally:
            idp.stop()
    print(f"rounds: {args.rounds}; entitlement_check_interval {args.interval:g} s, gateway recheck_interval "
          f"{args.recheck:g} s; 1-min load {os.getloadavg()[0]:.1f}")
    for i, name in enumerate(("removal at the IdP -> open session closed", "removal -> new login refused")):
        values = [row[i] for row in rows]
        print(f"{name}: median {statistics.median(values):.2f} s, min {min(values):.2f}, max {max(values):.2f}")


if __name__ == "__main__":
    main()
