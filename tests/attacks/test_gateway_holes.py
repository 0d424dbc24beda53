"""Attacks on the SSH gateway: a flood that starved real logins, and revocation that never reached SSH.

Real hub, real daemon, real OpenSSH for the user, asyncssh for the flood
(loopback only, bounded in time). The flood comes from 127.0.0.1; the real
user connects from 127.0.0.2, another address on the same loopback.
"""

import asyncio
import subprocess
import time

import asyncssh
import pytest
from hubrig import remove_user_artifacts
from oidcrig import IdP, hub_env, login
from sshrig import Client, keygen, module_hub, wait_for_sshd, wait_port, write_keys

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.attack]

LIMITS = """
c.SSHGateway.max_logins_per_peer = 10
c.SSHGateway.login_window = 60
c.SSHGateway.max_connections_per_peer = 6
c.SSHGateway.recheck_interval = 1
"""


def from_second_address(client):
    """The user's OpenSSH reaches the gateway from 127.0.0.2, not the flooding 127.0.0.1."""
    text = client.config.read_text().replace("Host gateway\n", "Host gateway\n    BindAddress 127.0.0.2\n", 1)
    client.config.write_text(text)
    return client


async def flood(port, seconds, parallel=12):
    """Unauthenticated clients cycling user names for ``seconds``; returns how many attempts were made."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    deadline = time.monotonic() + seconds
    made = 0

    async def one(i):
        nonlocal made
        while time.monotonic() < deadline:
            made += 1
            try:
                conn = await asyncio.wait_for(asyncssh.connect(
                    "127.0.0.1", port, username=f"flood{i}-{made}", client_keys=[key], known_hosts=None,
                    agent_path=None, password=None), 10)
                conn.close()
            except (OSError, asyncssh.Error, asyncio.TimeoutError):
                pass

    await asyncio.gather(*(one(i) for i in range(parallel)))
    return made


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, image):
    with module_hub(tmp_path_factory.mktemp("gw-flood"), dclient, LIMITS) as hub:
        yield hub


def test_a_flood_from_one_address_neither_reaches_the_store_nor_starves_a_real_login(hub, tmp_path):
    """Hole 9: each attempt was a key-store read on a 4-thread pool, with no limit per client."""
    key, public = keygen(tmp_path, "alice")
    write_keys(hub.state / "ssh-keys", "gw-alice", [public])
    assert hub.spawn_and_wait("gw-alice")[-1].get("ready")
    client = from_second_address(Client(hub, "gw-alice", key, tmp_path))
    assert wait_for_sshd(client, "gw-alice").returncode == 0  # the container's sshd is up before the flood
    port = int(hub.env["HS_SSH_GATEWAY_PORT"])

    async def during_flood():
        flooding = asyncio.ensure_future(flood(port, seconds=12))
        await asyncio.sleep(3)  # the flood is under way
        started = time.monotonic()
        result = await asyncio.to_thread(client.ssh, "gw-alice", "id -u")
        return await flooding, result, time.monotonic() - started

    made, result, took = asyncio.run(during_flood())
    assert result.returncode == 0 and result.stdout.split() == ["1000"], result.stderr
    assert took < 30, took
    audit = hub.audit()
    throttled = [e for e in audit if e["event"] == "ssh.gateway.throttled"
                 or (e["event"] == "ssh.gateway.auth" and "throttled" in e.get("reason", ""))]
    looked_up = [e for e in audit if e["event"] == "ssh.gateway.auth" and e.get("peer") == "127.0.0.1"
                 and e["decision"] == "deny" and "throttled" not in e.get("reason", "")]
    assert made > 40 and throttled, (made, len(throttled))
    assert len(looked_up) <= 10, len(looked_up)  # max_logins_per_peer: the rest never reached the store
    hub.stop_server("gw-alice")


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    idp = IdP(tmp_path_factory.mktemp("idp") / "idp.log", token_max_age=3).start()
    yield idp
    idp.stop()


def test_revocation_at_the_idp_reaches_ssh(idp, tmp_path, dclient, image):
    """Hole 10: the gateway consulted only the key store, so a revoked user kept SSH."""
    user = "oidc-ssh-rev"
    with module_hub(tmp_path / "hub", dclient, LIMITS, env=hub_env(idp, refresh_age=1)) as hub:
        hub.users.add(user)
        idp.set_user(user, ["staff"])
        session, _ = login(hub, user)
        key, public = keygen(tmp_path, "rev")
        write_keys(hub.state / "ssh-keys", user, [public])
        assert hub.spawn_and_wait(user)[-1].get("ready")
        client = Client(hub, user, key, tmp_path)
        assert wait_for_sshd(client, user).returncode == 0
        held = subprocess.Popen(["ssh", "-F", str(client.config), user, "sleep 120"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert held.poll() is None  # an open session
        idp.set_user(user, [])  # removed from every group at the identity provider
        time.sleep(1.5)
        session.get(f"{hub.url}/hub/home", timeout=30)  # the next refresh revokes
        try:
            held.wait(30)  # cut: the gateway closes it (and the server is stopped)
        finally:
            held.kill()
        refused = client.ssh(user, "id -u")
        assert refused.returncode != 0, refused.stderr

        def denied():  # the gateway's records reach the hub's audit log a moment later
            return [e for e in hub.audit() if e["event"] == "ssh.gateway.auth" and e.get("user") == user
                    and e["decision"] == "deny"]

        deadline = time.monotonic() + 15
        while not denied() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert denied() and "access withdrawn by your identity provider" in denied()[-1]["reason"], \
            (denied(), refused.stderr)
    remove_user_artifacts(dclient, {user})
