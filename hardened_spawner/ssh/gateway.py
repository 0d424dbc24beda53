"""The SSH gateway: one port on the hub through which users reach their own servers.

Run by JupyterHub as a managed service::

    python -m hardened_spawner.ssh.gateway --config /etc/jupyterhub/jupyterhub_config.py

It reads the same configuration as the hub (key store, key policy, audit
log) plus its own ``SSHGateway`` section. Every connection authenticates by
public key against the key store, read afresh, so a key removed from the
store is refused at once. The gateway offers no shell, command, sftp or
remote forwarding: only ``direct-tcpip`` channels (what ``ssh -J`` /
``ProxyJump`` opens) whose host is a logical target (see
:mod:`hardened_spawner.ssh.commands`) naming one of the caller's own
servers, mapped through the Hub API to that server's sshd. It never dials
an address a client names. One audit line per authentication and per
forwarding request (and per refused session).
"""

import asyncio
import base64
import contextlib
import logging
import os
import signal
import stat
import sys
from concurrent.futures import ThreadPoolExecutor

import asyncssh
from asyncssh import ChannelOpenError
from traitlets import Bool, Float, Int, Unicode, default
from traitlets.config import Application

from .. import audit
from ..audit import AuditLog
from ..keys.stores import check_username
from ..keys.validation import check_keys
from ..keys.targets import TargetRefused, jump_host, parse_target
from ..spawner import configured_settings
from ..telemetry.forward import HubForwarder
from .hub import HubAPI, resolve

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
    """The gateway's persistent ed25519 host key, created (0600) on first start."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(f"host key {path} is readable by others: chmod 600 it")
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key("ssh-ed25519")
    try:
        os.write(fd, key.export_private_key("openssh"))
    finally:
        os.close(fd)
    return key


class GatewayServer(asyncssh.SSHServer):
    """One client connection."""

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

    def connection_lost(self, exc):
        if self.username is not None and not self.authenticated:
            reason = self.problem or ("none of the offered keys is in the key store" if self.offered
                                      else "no public key was offered")
            self.gateway.audit.write("ssh.gateway.auth", **self._fields(
                decision="deny", reason=reason, offered=self.offered))

    async def begin_auth(self, username):
        self.username = username
        self.keys, self.problem = await self.gateway.keys_for(username)
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


class SSHGateway(Application):
    """The SSH gateway service."""

    name = "hardened-spawner-ssh-gateway"
    description = __doc__.splitlines()[0]

    config_file = Unicode(
        "jupyterhub_config.py", config=True,
        help="The hub's configuration file; the gateway reads its key store, key policy and audit settings.",
    )
    ip = Unicode("127.0.0.1", config=True, help="Address the gateway listens on (``0.0.0.0``: all).")
    port = Int(8022, config=True, help="Port the gateway listens on.")
    host_key_file = Unicode(
        "ssh_gateway_host_ed25519_key", config=True,
        help="""The gateway's persistent ed25519 host key; created (0600) on first start.

        Publish its fingerprint (logged at start) so users can check it.""",
    )
    start_servers = Bool(
        False, config=True,
        help="""Start a user's server when they connect to it and it is not running.

        The gateway's role then needs the ``start:servers`` scope.""",
    )
    start_timeout = Float(180.0, config=True, help="Seconds to wait for a server the gateway started.")
    login_timeout = Float(30.0, config=True, help="Seconds a client has to authenticate.")
    retry_interval = Float(30.0, config=True, help="Seconds between attempts to listen when the port or host key fails.")
    hub_api_url = Unicode(config=True, help="Hub API URL. Default: ``$JUPYTERHUB_API_URL``.")
    api_token = Unicode(config=True, help="The service's API token. Default: ``$JUPYTERHUB_API_TOKEN``.")
    public_host = Unicode(
        "", config=True,
        help="Host name users reach the gateway at, for hints in refusals. Default: ``ip``.",
    )
    public_port = Int(0, config=True, help="Port users reach the gateway at. Default: ``port``.")

    aliases = {
        "config": "SSHGateway.config_file",
        "ip": "SSHGateway.ip",
        "port": "SSHGateway.port",
        "log-level": "Application.log_level",
    }

    @default("log_level")
    def _default_log_level(self):
        return logging.INFO

    @default("log_format")
    def _default_log_format(self):  # like the hub's own lines, which these join
        return "[%(levelname)1.1s %(asctime)s.%(msecs).03d SSHGateway] %(message)s"

    @default("log_datefmt")
    def _default_log_datefmt(self):
        return "%Y-%m-%d %H:%M:%S"

    @default("hub_api_url")
    def _default_hub_api_url(self):
        return os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")

    @default("api_token")
    def _default_api_token(self):
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    def initialize(self, argv=None):
        self.parse_command_line(argv)
        cli_config = self.config
        path = os.path.abspath(self.config_file)
        self.load_config_file(os.path.basename(path), os.path.dirname(path))
        self.update_config(cli_config)  # the command line wins over the file
        settings = configured_settings(self.config, "ssh-gateway")
        self.store = settings.ssh_key_store()
        self.policy = settings.ssh_key_policy()
        self.store_timeout = settings.ssh_store_timeout
        self.audit = AuditLog(settings.audit_log_file, self.log if settings.audit_to_hub_log else None)
        self.executor = ThreadPoolExecutor(4, thread_name_prefix="ssh-gateway-keys")
        self.hub = HubAPI(self.hub_api_url, self.api_token)
        audit.add_sink(HubForwarder(self.hub_api_url, self.api_token, log=self.log))  # metrics and events
        logging.getLogger("asyncssh").setLevel(logging.WARNING)

    def jump(self, username):
        return jump_host(username or "<user>", self.public_host or self.ip, self.public_port or self.port)

    async def keys_for(self, username):
        """``({public key blob: fingerprint}, problem)`` for ``username``, read from the store now."""
        if not self.store.configured():
            return {}, "no key store is configured"
        try:
            check_username(username)
            future = asyncio.get_running_loop().run_in_executor(self.executor, self.store.fetch, username)
            text = await asyncio.wait_for(future, self.store_timeout)
        except asyncio.TimeoutError:
            return {}, f"{self.store.describe()}: no answer within {self.store_timeout:g} s"
        except Exception as e:  # the store is unavailable: refuse, and say why in the audit log
            return {}, f"{self.store.describe()}: {getattr(e, 'reason', None) or e}"
        check = check_keys(text or "", self.policy)
        keys = {base64.b64decode(k.public.split()[1]): k.fingerprint for k in check.accepted}
        return keys, "" if keys else "no usable key in the key store"

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
        return await server.conn.forward_connection(host, port)

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
        self.log.info("SSH gateway on %s:%s, host key %s, key store: %s", self.ip, self.port,
                      host_key.get_fingerprint("sha256"), self.store.describe())
        return listener

    async def watch_parent(self, stop):
        """Stop when the hub that started us is gone (killed hard, it cannot stop its services)."""
        parent = os.getppid()
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
            if os.getppid() != parent:
                self.log.warning("the hub (pid %s) is gone: stopping the SSH gateway", parent)
                stop.set()

    async def serve(self):
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        watcher = asyncio.ensure_future(self.watch_parent(stop))
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
        await watcher
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
