"""One client connection of the SSH gateway (:mod:`.gateway`): authentication and what it may open.

The gateway owns the limits (:mod:`.limits`) and the lookups; a connection
tells it when it arrives, how far it got (:meth:`GatewayServer.progress`,
which decides which pending connection of a crowded address is closed
first), when it logs in and when it is gone.
"""

import fcntl
import struct
import termios
import time
from dataclasses import dataclass, field

from ..keys.sshlib import asyncssh
from ..keys.targets import TargetRefused, parse_target

PROHIBITED = asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED

# GatewayServer.progress(): how far a pending connection got (PeerLimits closes the lowest first).
DOOMED, SILENT, KEY_EXCHANGE, ENCRYPTED, AUTHENTICATING = range(5)


def unread_bytes(conn):
    """Bytes the client sent that the gateway has not read yet (``FIONREAD`` on its socket).

    A client's version line can wait in the socket while the gateway's loop is busy (a
    flood of idle sockets from the same address): that client has spoken, and must not
    be taken for one of the silent ones it competes with for the address's places.
    """
    sock = conn.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]
    except (OSError, ValueError):  # closed meanwhile (fileno -1)
        return 0


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

    def __init__(self, gateway):
        self.gateway = gateway
        self.conn = None
        self.peer = ""
        self.username = None
        self.keys = {}
        self.problem = ""
        self.looked_up = False
        self.offered = []
        self.fingerprint = ""
        self.authenticated = False
        self.counted_for = None  # the user this logged-in connection counts for
        self.logged_in = None  # time.monotonic() at login

    def _fields(self, **fields):
        return {"user": self.username, "peer": self.peer, **fields}

    def progress(self):
        """How far this connection got before logging in (a DOOMED one can no longer log in)."""
        if self.username is not None:
            return DOOMED if self.looked_up and not self.keys else AUTHENTICATING
        if not self.conn.get_extra_info("client_version"):
            return KEY_EXCHANGE if unread_bytes(self.conn) else SILENT
        return ENCRYPTED if self.conn.get_extra_info("recv_cipher") else KEY_EXCHANGE

    def connection_made(self, conn):
        self.conn = conn
        self.peer = (conn.get_extra_info("peername") or ("",))[0]
        self.gateway.arrived(self)

    def connection_lost(self, exc):
        if self in self.gateway.open_connections:  # ended by the client or the server, not closed by the gateway
            self.gateway.open_connections.discard(self)
            self.gateway.audit.write("ssh.gateway.ended", **self._fields(
                fingerprint=self.fingerprint, seconds=round(time.monotonic() - self.logged_in, 1)))
        self.gateway.limits.leave(self.peer, self, self.counted_for)
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
        throttled = self.gateway.limits.login(self.peer, username, self)
        if throttled:  # answered without asking the keys service or the hub
            self.keys, self.problem = {}, f"throttled: {throttled}"
        else:
            found, (allowed, why) = await self.gateway.login_answer(username)
            self.keys, self.problem = (found.keys, found.problem) if allowed else ({}, why)
        self.looked_up = True
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
        refused = self.gateway.limits.authenticated(self.peer, self, self.username)
        if refused:
            self.gateway.audit.write("ssh.gateway.auth", **self._fields(
                decision="deny", fingerprint=self.fingerprint, reason=refused))
            self.conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, f"{refused}: close some of them first")
            return
        self.counted_for = self.username
        self.logged_in = time.monotonic()
        self.gateway.open_connections.add(self)
        self.gateway.audit.write("ssh.gateway.auth", **self._fields(decision="accept", fingerprint=self.fingerprint))

    def session_requested(self):
        self.gateway.audit.write("ssh.gateway.session", **self._fields(
            decision="deny", reason="no shell, command or sftp on the gateway"))
        raise asyncssh.ChannelOpenError(PROHIBITED, "this gateway has no shell, commands or sftp: use it as a "
                                        f"jump host, e.g. ssh -J {self.gateway.jump(self.username)} "
                                        f"<container user>@{self.username}")

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        try:
            server_name = parse_target(self.username, dest_host, dest_port)
        except TargetRefused as e:
            self.gateway.audit.write("ssh.gateway.forward", **self._fields(
                target=f"{dest_host}:{dest_port}", decision="deny", reason=str(e)))
            raise asyncssh.ChannelOpenError(PROHIBITED, str(e)) from None
        return self.gateway.forward(self, server_name, f"{dest_host}:{dest_port}", dest_host.lower())

    def server_requested(self, listen_host, listen_port):
        self.gateway.audit.write("ssh.gateway.forward", **self._fields(
            target=f"{listen_host}:{listen_port}", decision="deny", reason="remote forwarding is not allowed"))
        return False
