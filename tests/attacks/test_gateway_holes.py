"""Attacks on the SSH gateway: floods and idle sockets from an address users share, and revocation
that never reached SSH.

Real hub, real daemon, real OpenSSH for the users, asyncssh and plain sockets for the attacker
(loopback only, bounded in time). The attacker and the users share 127.0.0.1, as people behind
one NAT or proxy share an address.
"""

import asyncio
import contextlib
import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import asyncssh
import pytest
from hubrig import remove_user_artifacts
from oidcrig import IdP, hub_env, login
from sshrig import Client, containers_of, keygen, module_hub, wait_for_sshd, wait_port, write_keys

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.attack]

LIMITS = """
c.SSHGateway.max_logins_per_peer = 10
c.SSHGateway.login_window = 60
c.SSHGateway.recheck_interval = 1
"""
NO_SHELL = "this gateway has no shell"  # what the gateway answers a logged-in user's session request


def from_second_address(client):
    """The user's OpenSSH reaches the gateway from 127.0.0.2, not the attacker's 127.0.0.1."""
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


async def hold_sessions(port, keys):
    """Each user of ``keys`` (user -> private key file) logs in from 127.0.0.1, four at a time, and holds the
    connection until all are in; returns the users who got in."""
    held, gate = {}, asyncio.Semaphore(4)

    async def one(user, key):
        async with gate:
            with contextlib.suppress(OSError, asyncssh.Error, asyncio.TimeoutError):
                held[user] = await asyncio.wait_for(asyncssh.connect(
                    "127.0.0.1", port, username=user, client_keys=[str(key)], known_hosts=None, agent_path=None,
                    password=None), 60)

    await asyncio.gather(*(one(u, k) for u, k in keys.items()))
    for conn in held.values():
        conn.close()
        await conn.wait_closed()
    return [u for u in keys if u in held]


class IdleSockets:
    """``count`` TCP connections to the gateway that never send a byte, each reopened as soon as it is closed."""

    def __init__(self, port, count):
        self.port, self.count = port, count
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def _open(self, selector):
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                time.sleep(0.01)
                continue
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            self.opened += 1
            return

    def _run(self):
        selector = selectors.DefaultSelector()
        for _ in range(self.count):
            self._open(selector)
        while not self._stop.is_set():
            for key, _ in selector.select(0.2):
                try:
                    data = key.fileobj.recv(4096)  # the gateway's version line: never answered
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # closed by the gateway: open another one at once
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
                    self._open(selector)
        for key in list(selector.get_map().values()):
            key.fileobj.close()


def gateway_records(hub, event, timeout=15, **match):
    """The gateway's audit records of ``event`` matching ``match``, once some reached the hub's audit log."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in hub.audit() if e["event"] == event and all(e.get(k) == v for k, v in match.items())]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, image):
    with module_hub(tmp_path_factory.mktemp("gw-flood"), dclient, LIMITS) as hub:
        yield hub


@pytest.fixture(scope="module")
def alice(hub, tmp_path_factory):
    """gw-alice with a running server whose sshd answers (her client connects from 127.0.0.1)."""
    work = tmp_path_factory.mktemp("gw-alice")
    key, public = keygen(work, "alice")
    write_keys(hub.state / "ssh-keys", "gw-alice", [public])
    assert hub.spawn_and_wait("gw-alice")[-1].get("ready")
    client = Client(hub, "gw-alice", key, work)
    assert wait_for_sshd(client, "gw-alice").returncode == 0
    return client


def test_thirty_idle_sockets_from_one_address_do_not_lock_out_a_user_there(hub, alice):
    """Issue 20: every TCP connection counted, so ten idle sockets locked everyone at that address out."""
    port = int(hub.env["HS_SSH_GATEWAY_PORT"])
    with IdleSockets(port, 30) as idle:
        deadline = time.monotonic() + 30
        while idle.opened < 40 and time.monotonic() < deadline:  # thirty open, and the gateway closing the oldest
            time.sleep(0.2)
        started = time.monotonic()
        result = alice.ssh("gw-alice", "id -u")  # a real login from the same address, to her container's sshd
        took = time.monotonic() - started
        opened = idle.opened
    assert result.returncode == 0 and result.stdout.split() == ["1000"], result.stderr
    assert took < 30 and opened > 40, (took, opened)
    dropped = gateway_records(hub, "ssh.gateway.dropped", peer="127.0.0.1")
    assert dropped and dropped[0]["dropped"] >= 1 and "max_pending_per_peer 10" in dropped[0]["reason"], dropped


def listener_pid(port):
    """The process listening on 127.0.0.1:``port`` (the gateway service the hub started)."""
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(out.split("pid=")[1].split(",")[0])


def test_a_client_that_spoke_is_not_closed_as_silent_while_the_gateway_was_busy(hub):
    """The race behind a flaky login among idle sockets, made certain: while the gateway is stopped (a busy
    loop), a client connects and sends its version line, then ten silent sockets from its address arrive.
    The gateway takes them all in one go; the client, oldest and not read yet, was closed as the silent one."""
    port = int(hub.env["HS_SSH_GATEWAY_PORT"])
    pid = listener_pid(port)
    os.kill(pid, signal.SIGSTOP)
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.sendall(b"SSH-2.0-OpenSSH_9.2p1 probe\r\n")
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(10)]
    finally:
        os.kill(pid, signal.SIGCONT)
    with client, contextlib.ExitStack() as stack:
        for sock in idle:
            stack.enter_context(sock)
        received, deadline = b"", time.monotonic() + 15
        while b"\n" not in received or len(received) < 300:  # the version line, then the key exchange packet
            assert time.monotonic() < deadline, received
            try:
                data = client.recv(4096)
            except ConnectionResetError:
                data = b""
            assert data, f"the gateway closed the client that had spoken (after {received!r})"
            received += data
    assert received.startswith(b"SSH-2.0-"), received


def test_many_users_behind_one_address_log_in_while_someone_there_floods_the_gateway(hub, alice, tmp_path):
    """Hole 9 (a flood made a key-store read per attempt and starved real logins), with the flood and the
    users at one address: the flood's lookups are capped, and the users it shares the address with get in."""
    users = [f"gw-nat-{i}" for i in range(12)] + ["gw-nat-new"]
    clients = {}
    for user in users:
        key, public = keygen(tmp_path, user)
        write_keys(hub.state / "ssh-keys", user, [public])
        hub.ensure_user(user)
        clients[user] = Client(hub, user, key, tmp_path)
    regulars, newcomer = users[:-1], users[-1]

    def logs_in(user, client=None):  # logged in at the gateway: it then refuses the shell, saying so
        return NO_SHELL in (client or clients[user]).ssh("gateway", "true").stderr

    port = int(hub.env["HS_SSH_GATEWAY_PORT"])
    # twelve users behind one address holding connections at once, more than any per-address limit (it was 10)
    assert asyncio.run(hold_sessions(port, {user: clients[user].key for user in regulars})) == regulars

    async def during_flood():
        # fewer flooding connections at once than the address's max_pending_per_peer (10) with the users'
        # two: this is the flood of failed logins (docs/security.md: a flood of complete handshakes beyond
        # that number competes with the users for those places)
        flooding = asyncio.ensure_future(flood(port, seconds=20, parallel=8))
        await asyncio.sleep(4)  # the flood has spent the address's budget of failed logins
        with ThreadPoolExecutor(2) as pool:
            again = await asyncio.to_thread(lambda: list(pool.map(logs_in, regulars)))
        container = await asyncio.to_thread(alice.ssh, "gw-alice", "id -u")
        first_here = await asyncio.to_thread(logs_in, newcomer)
        first_elsewhere = await asyncio.to_thread(logs_in, newcomer, from_second_address(
            Client(hub, newcomer, clients[newcomer].key, tmp_path / "second")))
        return await flooding, again, container, first_here, first_elsewhere

    made, again, container, first_here, first_elsewhere = asyncio.run(during_flood())
    assert again == [True] * len(regulars)
    assert container.returncode == 0 and container.stdout.split() == ["1000"], container.stderr
    assert not first_here and first_elsewhere  # a first login from the flooded address waits for the window
    audit = hub.audit()
    throttled = [e for e in audit if e["event"] == "ssh.gateway.auth" and "throttled" in e.get("reason", "")]
    looked_up = [e for e in audit if e["event"] == "ssh.gateway.auth" and e.get("peer") == "127.0.0.1"
                 and e["decision"] == "deny" and "throttled" not in e.get("reason", "")]
    assert made > 40 and throttled, (made, len(throttled))
    assert len(looked_up) <= 10, len(looked_up)  # max_logins_per_peer: the rest never reached the store
    assert any(e.get("user") == newcomer and e.get("peer") == "127.0.0.1" for e in throttled)


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    idp = IdP(tmp_path_factory.mktemp("idp") / "idp.log", token_max_age=3).start()
    yield idp
    idp.stop()


CHECK_INTERVAL = 5  # c.HardenedOAuthenticator.entitlement_check_interval: ticks of 1 s
# After the interval and one tick: the IdP round trip (token grant + userinfo), the gateway's
# recheck_interval (1 s) and a loaded 2-core machine.
BOUND = 15
REVOCATION = LIMITS + f"c.HardenedOAuthenticator.entitlement_check_interval = {CHECK_INTERVAL}\n"


def test_revocation_at_the_idp_reaches_ssh(idp, tmp_path, dclient, image):
    """Hole 10: the gateway consulted only the key store, so a revoked user kept SSH. Then the
    withdrawal waited for the user's own browser to visit the hub, and a hub restart forgot it (and
    the gateway's start_servers started the revoked user's server again). Here the browser logs in
    once and never comes back: the background re-check alone must close the session, and the
    withdrawal must outlive a restart."""
    user = "oidc-ssh-rev"
    env = {**hub_env(idp), "HS_SSH_GATEWAY_START_SERVERS": "1"}  # refresh age 300 s: no refresh on the way
    with module_hub(tmp_path / "hub", dclient, REVOCATION, env=env) as hub:
        hub.users.add(user)
        idp.set_user(user, ["staff"])
        _, landed = login(hub, user)  # the only hub request of the user's browser
        assert landed.status_code == 302, landed.text
        key, public = keygen(tmp_path, "rev")
        write_keys(hub.state / "ssh-keys", user, [public])
        assert hub.spawn_and_wait(user)[-1].get("ready")  # started by the admin service, not the user
        client = Client(hub, user, key, tmp_path)
        assert wait_for_sshd(client, user).returncode == 0
        held = subprocess.Popen(["ssh", "-F", str(client.config), user, "sleep 300"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert held.poll() is None  # an open session
        logins = len(hub.audit())  # the held session's end comes after this
        idp.set_user(user, [])  # removed from every group at the identity provider
        removed = time.monotonic()
        try:
            held.wait(CHECK_INTERVAL * 1.1 + BOUND)  # cut by the gateway once the re-check withdrew the user
        finally:
            held.kill()
        closed_after = time.monotonic() - removed
        refused = client.ssh(user, "id -u")
        assert refused.returncode != 0, refused.stderr
        refused_after = time.monotonic() - removed

        def denied():  # the gateway's records reach the hub's audit log a moment later
            return [e for e in hub.audit() if e["event"] == "ssh.gateway.auth" and e.get("user") == user
                    and e["decision"] == "deny" and "access withdrawn by your identity provider" in e["reason"]]

        def closed():  # the stopped server can end the session (ended) just before the gateway's recheck closes it
            return [e for e in hub.audit()[logins:] if e.get("user") == user and (
                e["event"] == "ssh.gateway.closed" or e["event"] == "ssh.gateway.ended" and e["seconds"] >= 3)]

        deadline = time.monotonic() + 15
        while not (denied() and closed()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert denied(), (hub.audit()[-5:], refused.stderr)
        assert closed(), hub.audit()[-5:]
        deadline = time.monotonic() + 60
        while hub.server(user) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert hub.server(user) is None  # and the server was stopped
        print(f"\nrevocation at the IdP, no hub page visited: open session closed after {closed_after:.1f} s, "
              f"new login refused by {refused_after:.1f} s (entitlement_check_interval {CHECK_INTERVAL} s)")

        before = len(denied())
        hub.stop()
        hub.start()
        wait_port(int(hub.env["HS_SSH_GATEWAY_PORT"]))
        again = client.ssh(user, "id -u")  # start_servers is on: the gateway would start the server
        assert again.returncode != 0, again.stderr
        deadline = time.monotonic() + 15
        while len(denied()) == before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(denied()) > before, hub.audit()[-5:]
        assert not [c for c in containers_of(dclient, user) if c["State"] == "running"]
    remove_user_artifacts(dclient, {user})


SLOW_RECHECK = REVOCATION + "c.SSHGateway.recheck_interval = 120\n"  # the open connection outlives the withdrawal


def test_a_connection_from_before_the_withdrawal_opens_no_forward_and_starts_no_server(idp, tmp_path, dclient,
                                                                                   image):
    """Between a withdrawal and the gateway's next recheck of open connections, a connection that logged in
    before could open new forwards, and with start_servers the gateway asked the hub to start the
    withdrawn user's server again."""
    user = "oidc-ssh-fwd"
    env = {**hub_env(idp), "HS_SSH_GATEWAY_START_SERVERS": "1"}
    with module_hub(tmp_path / "hub", dclient, SLOW_RECHECK, env=env) as hub:
        hub.users.add(user)
        idp.set_user(user, ["staff"])
        login(hub, user)
        key, public = keygen(tmp_path, "fwd")
        write_keys(hub.state / "ssh-keys", user, [public])
        assert hub.spawn_and_wait(user)[-1].get("ready")
        assert wait_for_sshd(Client(hub, user, key, tmp_path), user).returncode == 0

        async def forwards():
            async with asyncssh.connect("127.0.0.1", int(hub.env["HS_SSH_GATEWAY_PORT"]), username=user,
                                        client_keys=[str(key)], known_hosts=None, agent_path=None,
                                        password=None) as conn:
                reader, writer = await conn.open_connection(user, 22)
                banner = await asyncio.wait_for(reader.readline(), 30)  # the container's sshd answers
                writer.close()
                idp.set_user(user, [])
                deadline = time.monotonic() + CHECK_INTERVAL * 1.1 + BOUND
                while not [e for e in hub.audit() if e["event"] == "auth.revoked" and e.get("user") == user]:
                    assert time.monotonic() < deadline, "no background re-check withdrew the user"
                    await asyncio.sleep(0.5)
                await asyncio.sleep(3)  # the withdrawn user's server has stopped
                with pytest.raises(asyncssh.ChannelOpenError) as refused:
                    await conn.open_connection(user, 22)  # start_servers would start it again
                return banner, refused.value.reason

        banner, reason = asyncio.run(forwards())
        assert banner.startswith(b"SSH-2.0-"), banner
        assert "access withdrawn by your identity provider" in reason, reason
        asked = [line for line in hub.log().splitlines()
                 if f"POST /hub/api/users/{user}/server" in line and "ssh-gateway@" in line]
        assert asked == []  # the gateway did not ask the hub to start the server
    remove_user_artifacts(dclient, {user})


ALLOW_LIST = LIMITS + f"""
c.JupyterHub.cleanup_servers = False  # servers outlive the hub's restart, as in production
c.Authenticator.entitlement_check_interval = {CHECK_INTERVAL}
c.Authenticator.allow_all = False
c.Authenticator.allow_existing_users = False  # else every user in the database stays allowed
import os
c.Authenticator.allowed_users = set(open(os.path.join(os.environ["HS_HUB_STATE"], "allowed_users")).read().split())
"""


def test_a_user_removed_from_allowed_users_loses_ssh_and_their_running_server_without_an_idp(
        tmp_path, dclient, image):
    """allowed_users (an authenticator without an IdP): a user the admin took off the list kept their
    running server through the hub's restart, and the admin API (or the gateway's start_servers) could
    start new ones for them; nothing stopped them."""
    user = "gw-unlisted"
    (tmp_path / "hub").mkdir()
    allowed = tmp_path / "hub" / "allowed_users"
    allowed.write_text(user + "\n")
    with module_hub(tmp_path / "hub", dclient, ALLOW_LIST) as hub:
        hub.users.add(user)
        key, public = keygen(tmp_path, "unlisted")
        write_keys(hub.state / "ssh-keys", user, [public])
        assert hub.spawn_and_wait(user)[-1].get("ready")
        client = Client(hub, user, key, tmp_path)
        assert wait_for_sshd(client, user).returncode == 0
        allowed.write_text("")  # the admin takes them off the list and restarts the hub
        hub.stop()
        hub.start()
        wait_port(int(hub.env["HS_SSH_GATEWAY_PORT"]))
        restarted = time.monotonic()
        refused = client.ssh(user, "id -u")
        assert refused.returncode != 0, refused.stderr
        assert gateway_records(hub, "ssh.gateway.auth", user=user, decision="deny", reason=(
            "access withdrawn by the hub admin: your account is no longer on this hub's list of allowed users"))
        deadline = restarted + CHECK_INTERVAL * 1.1 + BOUND
        while hub.server(user) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert hub.server(user) is None, "the server of a user no longer allowed still runs"
        print(f"\nallowed_users: the running server was stopped {time.monotonic() - restarted:.1f} s after "
              f"the hub came back (entitlement_check_interval {CHECK_INTERVAL} s)")
        failed = hub.spawn_and_wait(user)[-1]  # nor does the hub start one when an admin asks
        assert failed.get("failed") and "access was withdrawn" in failed.get("message", ""), failed
        assert not [c for c in containers_of(dclient, user) if c["State"] == "running"]
    remove_user_artifacts(dclient, {user})
