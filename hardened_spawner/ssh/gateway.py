"""The SSH gateway: one port on the hub through which users reach their own servers.

Run by JupyterHub as a managed service::

    python -m hardened_spawner.ssh.gateway --config /etc/jupyterhub/jupyterhub_config.py

It reads the same configuration as the hub (audit log) plus its own
``SSHGateway`` section. Every connection authenticates by public key against
the user's keys as the SSH keys service reads them now (the key store, and
the identity provider's claim where configured, validated by the hub's
policy), so a key removed is refused at once; the gateway itself holds no
key-store credentials. Every ``recheck_interval`` seconds it asks again for
each user with open connections and closes those whose key is gone. The
gateway offers no shell, command, sftp or remote forwarding: only
``direct-tcpip`` channels (what ``ssh -J`` / ``ProxyJump`` opens) whose host
is a logical target (see :mod:`hardened_spawner.keys.targets`) naming one of
the caller's own servers, mapped through the Hub API to that server's sshd.
It never dials an address a client names. One audit line per
authentication, per forwarding request, per refused session and per
connection closed because its key was removed.
"""

import asyncio
import base64
import contextlib
import logging
import os
import sys
from urllib.parse import quote

from jupyterhub.utils import url_path_join
from traitlets import Bool, Float, Int, TraitError, Unicode, default, validate

from ..admission.cache import SingleFlight
from ..keys.host_certs import HostKeyRefused, check_host_certificate, load_or_create_key
from ..keys.sshlib import asyncssh
from ..keys.stores import check_username
from ..keys.targets import TargetRefused, jump_host
from .connection import PROHIBITED, GatewayServer, UserKeys
from .hub import HubAPI, resolve
from .limits import PeerLimits, parse_startups
from .service_app import HubServiceApp

# Algorithms: post-quantum hybrids and curve25519 first; no SHA-1, no CBC, no small groups.
KEX_ALGS = ("mlkem768x25519-sha256", "sntrup761x25519-sha512@openssh.com", "curve25519-sha256",
            "curve25519-sha256@libssh.org", "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512")
ENCRYPTION_ALGS = ("chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com",
                   "aes256-ctr", "aes192-ctr", "aes128-ctr")
MAC_ALGS = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "umac-128-etm@openssh.com")
# Advertised to clients (server-sig-algs): no SHA-1 RSA, no DSA.
SIGNATURE_ALGS = ("ssh-ed25519", "sk-ssh-ed25519@openssh.com", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                  "ecdsa-sha2-nistp521", "sk-ecdsa-sha2-nistp256@openssh.com", "rsa-sha2-512", "rsa-sha2-256")


class SSHGateway(HubServiceApp):
    """The SSH gateway service."""

    name = "hardened-spawner-ssh-gateway"
    description = "the SSH gateway"

    ip = Unicode("127.0.0.1", config=True, help="Address the gateway listens on (``0.0.0.0``: all).")
    port = Int(8022, config=True, help="Port the gateway listens on.")
    host_key_file = Unicode(
        "ssh_gateway_host_ed25519_key", config=True,
        help="""The gateway's persistent ed25519 host key; created (0600) on first start.

        Its public half is written to ``<host_key_file>.pub``; the hub's home page
        shows its fingerprint (also logged at start). Before it forwards a connection, the
        gateway checks the server's sshd holds a host certificate from the hub's CA
        (``ssh_host_ca_key_file``) for the name the client asked for.""",
    )
    start_servers = Bool(
        False, config=True,
        help="""Start a user's server when they connect to it and it is not running.

        The gateway's role then needs the ``start:servers`` scope.""",
    )
    start_timeout = Float(180.0, config=True, help="Seconds to wait for a server the gateway started.")
    login_timeout = Float(
        30.0, config=True,
        help="""Login grace time: seconds a connection has from its first byte to being logged in;
        then it is closed. It bounds how long a connection that never logs in holds one of its
        address's ``max_pending_per_peer`` places.""",
    )
    retry_interval = Float(30.0, config=True, help="Seconds between attempts to listen when the port or host key fails.")
    keys_url = Unicode(
        "", config=True,
        help="""Internal URL of the SSH keys service (``keys_service()``'s ``url``), which the
        gateway asks for a user's keys at every login and every ``recheck_interval``.""",
    )
    keys_service_name = Unicode("ssh-keys", config=True, help="The SSH keys service's name in ``c.JupyterHub.services``.")
    recheck_interval = Float(
        5.0, config=True,
        help="""Seconds between checks of the keys of users with open connections; a connection
        whose key was removed (on the keys page, in the store, at the identity provider) is closed.""",
    )
    public_host = Unicode(
        "", config=True,
        help="Host name users reach the gateway at, for hints in refusals. Default: ``ip``.",
    )
    public_port = Int(0, config=True, help="Port users reach the gateway at. Default: ``port``.")
    max_pending_per_peer = Int(
        10, min=1, config=True,
        help="""Connections one client address may have open that have not logged in yet. A new
        one at this number is let in, and the address's pending connection that got least far is
        closed instead, oldest first (one that can no longer log in, then one that sent nothing,
        then one still exchanging keys; last one that is authenticating): idle or stalled sockets
        cannot keep the people behind a shared address (NAT, proxy) out. Logged-in connections do
        not count here (see ``max_sessions_per_user``).""",
    )
    max_startups = Unicode(
        "50:30:200", config=True,
        help="""Connections not logged in yet, from all addresses together, as sshd's
        ``MaxStartups start:rate:full``: from ``start`` on, a new connection is refused (closed at
        once) with a chance of ``rate`` percent, rising linearly to every one at ``full``; one
        number ``N`` means ``N:100:N``. A new connection that takes the place of one of its own
        address's (``max_pending_per_peer``) does not add to the total and is never refused for it.
        Keep ``start`` well above ``max_pending_per_peer``, so that one address alone cannot reach it.""",
    )

    @validate("max_startups")
    def _valid_startups(self, proposal):
        try:
            parse_startups(proposal.value)
        except ValueError as e:
            raise TraitError(f"SSHGateway.max_startups: {e}") from None
        return proposal.value

    max_sessions_per_user = Int(
        50, min=1, config=True,
        help="""Logged-in connections one user may hold through the gateway at once, from any
        address; one more is closed right after it logged in, with the reason. Counted per user,
        so it limits no one else.""",
    )
    max_logins_per_peer = Int(
        20, min=1, config=True,
        help="""Failed logins (each asks the keys service and the hub) one client address may attempt
        per ``login_window``; more are refused without asking anyone, so one client cannot starve the
        rest. Successful logins do not count, and a user who logged in through the gateway in the
        last 30 days is never refused for this: someone behind the same address (NAT) who fails
        logins cannot lock them out. Only a first login from an address over the limit waits.""",
    )
    login_window = Float(60.0, config=True, help="Seconds over which ``max_logins_per_peer`` counts.")

    aliases = {
        "config": "HubServiceApp.config_file",
        "ip": "SSHGateway.ip",
        "port": "SSHGateway.port",
        "keys-url": "SSHGateway.keys_url",
        "log-level": "Application.log_level",
    }

    @default("log_format")
    def _default_log_format(self):  # like the hub's own lines, which these join
        return "[%(levelname)1.1s %(asctime)s.%(msecs).03d SSHGateway] %(message)s"

    def initialize(self, argv=None):
        self.load_hub_config(argv)
        self.settings = self.hub_settings("ssh-gateway")
        self.audit = self.audit_log(self.settings)
        self.hub = HubAPI(self.hub_api_url, self.api_token)
        base_url = os.environ.get("JUPYTERHUB_BASE_URL", "/")  # the service's routes keep the hub's prefix
        self.keys_service = HubAPI(url_path_join(self.keys_url, base_url, "services", self.keys_service_name, "api"),
                                   self.api_token)
        self.open_connections = set()
        self.limits = PeerLimits(self.max_pending_per_peer, self.max_sessions_per_user, self.max_logins_per_peer,
                                 self.login_window, parse_startups(self.max_startups))
        self._answers = SingleFlight(0)  # username -> the lookup running for them (no answers kept)
        logging.getLogger("asyncssh").setLevel(logging.WARNING)

    def jump(self, username):
        return jump_host(username or "<user>", self.public_host or self.ip, self.public_port or self.port)

    def arrived(self, server):
        """A new connection: make room for it among its address's pending ones."""
        close, dropped = self.limits.arrive(server.peer, server, GatewayServer.progress)
        for victim in close:
            victim.conn.abort()
        if dropped:
            self._report_drops(server.peer, dropped)

    def _report_drops(self, peer, dropped):
        self.audit.write("ssh.gateway.dropped", peer=peer, dropped=dropped, reason=(
            f"{dropped} connection(s) from {peer} that had not logged in were closed, to make room for new "
            f"ones (max_pending_per_peer {self.max_pending_per_peer}) or with too many pending in all "
            f"(max_startups {self.max_startups})"))

    async def login_answer(self, username):
        """``(UserKeys, (allowed, why))`` for a login, asked now (a key removed is refused at once).
        Logins of one user while a lookup for them runs share it: one lookup per user at a time."""
        async def ask():
            return await asyncio.gather(self.keys_for(username), self.hub.access(username))

        answer, _ = await self._answers.get(username, ask)
        return answer

    async def keys_for(self, username):
        """The user's usable keys (:class:`UserKeys`), as the SSH keys service reads them now."""
        if not self.keys_url:
            return UserKeys(problem="no SSH keys service is configured (SSHGateway.keys_url)", known=False)
        try:
            check_username(username)
        except ValueError as e:
            return UserKeys(problem=str(e))
        try:
            code, data = await self.keys_service.request("GET", f"/users/{quote(username, safe='')}/keys")
        except TargetRefused as e:
            return UserKeys(problem=f"the SSH keys service: {e}", known=False)
        data = data if isinstance(data, dict) else {}
        if code == 404:
            return UserKeys(problem=f"there is no JupyterHub user {username!r}")
        if code != 200:
            message = data.get("message") or f"HTTP {code}"
            return UserKeys(problem=f"the SSH keys service refused: {message}", known=False)
        if data.get("problem"):
            return UserKeys(problem=data["problem"], known=False)
        keys = {base64.b64decode(k["public"].split()[1]): k["fingerprint"]
                for k in data.get("keys") or () if k.get("usable") and k.get("public")}
        return UserKeys(keys, "" if keys else "no usable key in the key store")

    async def recheck(self, stop):
        """Close open connections whose key was removed or whose user's access was withdrawn."""
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.recheck_interval)
            self.limits.forget_idle()
            for peer, dropped in self.limits.due_reports().items():
                self._report_drops(peer, dropped)
            by_user = {}
            for server in list(self.open_connections):
                by_user.setdefault(server.username, []).append(server)
            for username, servers in by_user.items():
                found, (allowed, why) = await asyncio.gather(self.keys_for(username), self.hub.access(username))
                if not allowed:
                    for server in servers:
                        self.close(server, why)
                    continue
                if not found.known:
                    self.log.warning("cannot recheck the keys of %s (%s): open connections stay", username,
                                     found.problem)
                    continue
                for server in servers:
                    if server.fingerprint not in found.keys.values():
                        self.close(server, "the key was removed", f"your SSH key {server.fingerprint} was removed")

    def close(self, server, reason, told=""):
        self.open_connections.discard(server)
        self.audit.write("ssh.gateway.closed", **server._fields(fingerprint=server.fingerprint, reason=reason))
        server.conn.disconnect(asyncssh.DISC_BY_APPLICATION, f"{told or reason}; connection closed")

    async def forward(self, server, server_name, target, name):
        """Open the channel to the caller's own server's sshd, or refuse with the reason.

        The hub is asked first whether the user may still get in, so a withdrawal between the login
        and the next recheck neither reaches the server nor starts it (``start_servers``). ``name`` is
        the host name the client asked for (``alice``, ``alice.gpu``): the server's sshd must prove a
        host certificate for it from the hub's CA before anything is forwarded."""
        try:
            allowed, why = await self.hub.access(server.username)
            if not allowed:
                raise TargetRefused(why)
            host, port = await resolve(self.hub, server.username, server_name,
                                       self.start_servers, self.start_timeout)
            await check_host_certificate(host, port, name, self.settings.ssh_host_ca_lines())
        except (TargetRefused, HostKeyRefused, ValueError) as e:
            reason = f"{name} was not verified: {e}" if isinstance(e, HostKeyRefused) else str(e)
            self.audit.write("ssh.gateway.forward", **server._fields(
                target=target, server=server_name, decision="deny", reason=reason))
            raise asyncssh.ChannelOpenError(PROHIBITED, reason) from None
        self.audit.write("ssh.gateway.forward", **server._fields(
            target=target, server=server_name, decision="allow", address=f"{host}:{port}"))
        try:
            return await server.conn.forward_connection(host, port)
        except asyncssh.ChannelOpenError as e:
            raise asyncssh.ChannelOpenError(
                e.code, f"the server's sshd does not answer ({e.reason}); it starts within seconds of its "
                "first key, so if you just added one, try again") from None

    async def listen(self):
        host_key = load_or_create_key(self.host_key_file)
        supported_kex = {alg.decode() for alg in asyncssh.kex.get_kex_algs()}
        listener = await asyncssh.create_server(
            lambda: GatewayServer(self), self.ip, self.port,
            server_host_keys=[host_key],
            kex_algs=[a for a in KEX_ALGS if a in supported_kex],
            encryption_algs=list(ENCRYPTION_ALGS), mac_algs=list(MAC_ALGS), compression_algs=["none"],
            signature_algs=list(SIGNATURE_ALGS),
            login_timeout=self.login_timeout, keepalive_interval=60,
            allow_scp=False, agent_forwarding=False, x11_forwarding=False, allow_pty=False,
            line_editor=False, server_version="hardened-spawner-gateway",
        )
        self.log.info("SSH gateway on %s:%s, host key %s, keys from %s", self.ip, self.port,
                      host_key.get_fingerprint("sha256"), self.keys_url or "nowhere (no keys_url)")
        return listener

    async def serve(self):
        stop = self.stop_event()
        tasks = [asyncio.ensure_future(self.watch_parent(stop)), asyncio.ensure_future(self.recheck(stop))]
        listener = None
        while listener is None and not stop.is_set():
            try:
                listener = await self.listen()
            except (OSError, ValueError) as e:
                # stay up and retry: JupyterHub restarts an exited service at once, in a loop
                self.log.error("SSH gateway cannot start: %s; retrying in %g s", e, self.retry_interval)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.retry_interval)
        await stop.wait()
        await asyncio.gather(*tasks)
        if listener is not None:
            listener.close()
            await listener.wait_closed()

    def start(self):
        asyncio.run(self.serve())


def main(argv=None):
    app = SSHGateway()
    app.initialize(argv if argv is not None else sys.argv[1:])
    app.start()


if __name__ == "__main__":
    main()
