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
import stat
import sys
from dataclasses import dataclass, field
from urllib.parse import quote

from jupyterhub.utils import url_path_join
from traitlets import Bool, Float, Int, Unicode, default

from ..keys.sshlib import asyncssh
from ..keys.stores import check_username
from ..keys.targets import TargetRefused, jump_host, parse_target
from .hub import HubAPI, resolve
from .limits import PeerLimits
from .service_app import HubServiceApp

ChannelOpenError = asyncssh.ChannelOpenError
PROHIBITED = asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED

# Algorithms: post-quantum hybrids and curve25519 first; no SHA-1, no CBC, no small groups.
KEX_ALGS = ("mlkem768x25519-sha256", "sntrup761x25519-sha512@openssh.com", "curve25519-sha256",
            "curve25519-sha256@libssh.org", "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512")
ENCRYPTION_ALGS = ("chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com",
                   "aes256-ctr", "aes192-ctr", "aes128-ctr")
MAC_ALGS = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "umac-128-etm@openssh.com")
# Advertised to clients (server-sig-algs): no SHA-1 RSA, no DSA.
SIGNATURE_ALGS = ("ssh-ed25519", "sk-ssh-ed25519@openssh.com", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                  "ecdsa-sha2-nistp521", "sk-ecdsa-sha2-nistp256@openssh.com", "rsa-sha2-512", "rsa-sha2-256")


def load_host_key(path):
    """The gateway's persistent ed25519 host key, created (0600) on first start.

    Its public half is kept next to it (``<path>.pub``, 0644), where the hub
    reads the fingerprint it shows users.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(f"host key {path} is readable by others: chmod 600 it")
        key = asyncssh.read_private_key(path)
    else:
        key = asyncssh.generate_private_key("ssh-ed25519")
        try:
            os.write(fd, key.export_private_key("openssh"))
        finally:
            os.close(fd)
    public = key.export_public_key("openssh")
    with contextlib.suppress(FileNotFoundError):
        with open(path + ".pub", "rb") as f:
            if f.read() == public:
                return key
    tmp = f"{path}.pub.{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), "wb") as f:
        f.write(public)
    os.replace(tmp, path + ".pub")
    return key


@dataclass
class UserKeys:
    """A user's usable keys as the keys service answered: ``{key blob: fingerprint}``.

    ``known`` is False when the answer could not be had (service or store
    down): logins are refused, open connections are left alone.
    """

    keys: dict = field(default_factory=dict)
    problem: str = ""
    known: bool = True


class GatewayServer(asyncssh.SSHServer):
    """One client connection."""

    throttled = ""
    counted = False

    def __init__(self, gateway):
        self.gateway = gateway
        self.conn = None
        self.peer = ""
        self.username = None
        self.keys = {}
        self.problem = ""
        self.offered = []
        self.fingerprint = ""
        self.authenticated = False

    def _fields(self, **fields):
        return {"user": self.username, "peer": self.peer, **fields}

    def connection_made(self, conn):
        self.conn = conn
        self.peer = (conn.get_extra_info("peername") or ("",))[0]
        self.throttled = self.gateway.limits.connect(self.peer)
        self.counted = not self.throttled
        if self.throttled:
            self.gateway.audit.write("ssh.gateway.throttled", peer=self.peer, reason=self.throttled)

    def connection_lost(self, exc):
        self.gateway.open_connections.discard(self)
        if self.counted:
            self.gateway.limits.disconnect(self.peer)
        if self.username is not None and not self.authenticated:
            reason = self.problem or ("none of the offered keys is in the key store" if self.offered
                                      else "no public key was offered")
            self.gateway.audit.write("ssh.gateway.auth", **self._fields(
                decision="deny", reason=reason, offered=self.offered))

    async def begin_auth(self, username):
        if self.username is not None and username != self.username:
            self.keys, self.problem = {}, "one user name per connection"  # no second lookup
            return True
        self.username = username
        self.throttled = self.throttled or self.gateway.limits.login(self.peer)
        if self.throttled:  # answered without asking the keys service or the hub
            self.keys, self.problem = {}, f"throttled: {self.throttled}"
            return True
        found, (allowed, why) = await asyncio.gather(self.gateway.keys_for(username),
                                                     self.gateway.hub.access(username))
        self.keys, self.problem = (found.keys, found.problem) if allowed else ({}, why)
        return True

    def password_auth_supported(self):
        return False

    def kbdint_auth_supported(self):
        return False

    def host_based_auth_supported(self):
        return False

    def public_key_auth_supported(self):
        return True

    def validate_public_key(self, username, key):
        fingerprint = key.get_fingerprint("sha256")
        if fingerprint not in self.offered:
            self.offered.append(fingerprint)
        if username == self.username and key.public_data in self.keys:
            self.fingerprint = fingerprint
            return True
        return False

    def auth_completed(self):
        self.authenticated = True
        self.gateway.limits.succeeded(self.peer)
        self.gateway.open_connections.add(self)
        self.gateway.audit.write("ssh.gateway.auth", **self._fields(decision="accept", fingerprint=self.fingerprint))

    def session_requested(self):
        self.gateway.audit.write("ssh.gateway.session", **self._fields(
            decision="deny", reason="no shell, command or sftp on the gateway"))
        raise ChannelOpenError(PROHIBITED, "this gateway has no shell, commands or sftp: use it as a "
                               f"jump host, e.g. ssh -J {self.gateway.jump(self.username)} "
                               f"<container user>@{self.username}")

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        try:
            server_name = parse_target(self.username, dest_host, dest_port)
        except TargetRefused as e:
            self.gateway.audit.write("ssh.gateway.forward", **self._fields(
                target=f"{dest_host}:{dest_port}", decision="deny", reason=str(e)))
            raise ChannelOpenError(PROHIBITED, str(e)) from None
        return self.gateway.forward(self, server_name, f"{dest_host}:{dest_port}")

    def server_requested(self, listen_host, listen_port):
        self.gateway.audit.write("ssh.gateway.forward", **self._fields(
            target=f"{listen_host}:{listen_port}", decision="deny", reason="remote forwarding is not allowed"))
        return False


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
        shows its fingerprint (also logged at start).""",
    )
    start_servers = Bool(
        False, config=True,
        help="""Start a user's server when they connect to it and it is not running.

        The gateway's role then needs the ``start:servers`` scope.""",
    )
    start_timeout = Float(180.0, config=True, help="Seconds to wait for a server the gateway started.")
    login_timeout = Float(30.0, config=True, help="Seconds a client has to authenticate.")
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
    max_connections_per_peer = Int(
        10, config=True, help="Connections one client address may hold open at once; more are refused.")
    max_logins_per_peer = Int(
        20, config=True,
        help="""Failed logins (each asks the keys service and the hub) one client address may attempt
        per ``login_window``; more are refused without asking anyone, so one client cannot starve the
        rest. Successful logins do not count (many users may share one NAT address).""",
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
        self.audit = self.audit_log(self.hub_settings("ssh-gateway"))
        self.hub = HubAPI(self.hub_api_url, self.api_token)
        base_url = os.environ.get("JUPYTERHUB_BASE_URL", "/")  # the service's routes keep the hub's prefix
        self.keys_service = HubAPI(url_path_join(self.keys_url, base_url, "services", self.keys_service_name, "api"),
                                   self.api_token)
        self.open_connections = set()
        self.limits = PeerLimits(self.max_connections_per_peer, self.max_logins_per_peer, self.login_window)
        logging.getLogger("asyncssh").setLevel(logging.WARNING)

    def jump(self, username):
        return jump_host(username or "<user>", self.public_host or self.ip, self.public_port or self.port)

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

    async def forward(self, server, server_name, target):
        """Open the channel to the caller's own server's sshd, or refuse with the reason."""
        try:
            host, port = await resolve(self.hub, server.username, server_name,
                                       self.start_servers, self.start_timeout)
        except TargetRefused as e:
            self.audit.write("ssh.gateway.forward", **server._fields(
                target=target, server=server_name, decision="deny", reason=str(e)))
            raise ChannelOpenError(PROHIBITED, str(e)) from None
        self.audit.write("ssh.gateway.forward", **server._fields(
            target=target, server=server_name, decision="allow", address=f"{host}:{port}"))
        try:
            return await server.conn.forward_connection(host, port)
        except ChannelOpenError as e:
            raise ChannelOpenError(e.code, f"the server's sshd does not answer ({e.reason}); it starts within "
                                   "seconds of its first key, so if you just added one, try again") from None

    async def listen(self):
        host_key = load_host_key(self.host_key_file)
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
