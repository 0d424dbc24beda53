"""The hub as the SSH certificate authority of its containers' sshd.

At every start the hub makes the container's ed25519 host key and signs a
host certificate for the names users type for that server (its logical
target, :mod:`.targets`: ``alice``, ``alice.gpu``), valid from a minute ago
for ``ssh_host_certificate_days``. Both travel into the container with the
keys file (:mod:`.delivery`); the container never makes a host key. Users
trust the CA with one ``@cert-authority`` line in ``known_hosts``
(:func:`.targets.known_hosts_ca_lines`), so host keys are checked strictly
although each start has a new one, and the gateway checks the certificate
(:func:`check_host_certificate`) before it forwards a connection. A server
running longer gets a new certificate for the same key before the old one
ends (:func:`renewable_certificate`, :mod:`..spawner.host_renewal`).

The CA key is kept like the gateway's host key (:func:`load_or_create_key`):
a 0600 file made on first use, its public half beside it. During a rotation
the admin lists the other CA's public key in ``ssh_host_ca_accepted_keys``:
it is accepted by the gateway and shown to users beside the signing one.
"""

import asyncio
import contextlib
import os
import stat
from dataclasses import dataclass

from .delivery import HOST_CERT_FILE, HOST_KEY_DIR, HOST_KEY_FILE, KEYS_DIR
from .sshlib import asyncssh
from ..decisions.ssh_names import logical_target

HOST_CERT_ALGORITHM = "ssh-ed25519-cert-v01@openssh.com"
HOST_KEY_PATH = f"{KEYS_DIR}/{HOST_KEY_DIR}/{HOST_KEY_FILE}"
HOST_CERT_PATH = f"{KEYS_DIR}/{HOST_KEY_DIR}/{HOST_CERT_FILE}"
CLOCK_SKEW = 60  # seconds a certificate is valid before it is made: clocks of hub and client differ


def load_or_create_key(path):
    """The persistent ed25519 private key at ``path``, created (0600) on first use.

    Its public half is kept next to it (``<path>.pub``, 0644). Creation is atomic
    (written aside, then linked into place), so processes that start together (the
    hub and its gateway) never read a half-written key; a key readable by others is
    refused.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        key = _create(path)
    else:
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(f"private key {path} is readable by others: chmod 600 it")
        key = asyncssh.read_private_key(path)
    public = key.export_public_key("openssh")
    with contextlib.suppress(FileNotFoundError):
        with open(path + ".pub", "rb") as f:
            if f.read().split()[:2] == public.split()[:2]:  # ssh-keygen's file may carry a comment
                return key
    _write_atomic(path + ".pub", public, 0o644)
    return key


def _create(path):
    key = asyncssh.generate_private_key("ssh-ed25519")
    tmp = f"{path}.new.{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(key.export_private_key("openssh"))
    try:
        os.link(tmp, path)
    except FileExistsError:  # another process made it first: use theirs
        return asyncssh.read_private_key(path)
    finally:
        os.unlink(tmp)
    return key


def _write_atomic(path, data, mode):
    tmp = f"{path}.{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class HostKey:
    """A container's host key and its certificate, as OpenSSH files."""

    private: str       # the private key (OpenSSH format)
    certificate: str   # the host certificate, one line
    fingerprint: str   # SHA256 fingerprint of the host key
    principals: tuple  # the host names the certificate is valid for
    valid_before: int  # end of validity (seconds since the epoch)


def host_principals(username, server_name):
    """The names a user types for this server (ssh lower-cases host names)."""
    return (logical_target(username, server_name).lower(),)


def issue_host_key(ca_key, username, server_name, now, lifetime):
    """A new host key for ``username``'s server ``server_name``, certified by ``ca_key`` for ``lifetime`` s."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    certificate, valid_before = renew_host_certificate(ca_key, key, username, server_name, now, lifetime)
    return HostKey(key.export_private_key("openssh").decode(), certificate, key.get_fingerprint("sha256"),
                   host_principals(username, server_name), valid_before)


def renew_host_certificate(ca_key, key, username, server_name, now, lifetime):
    """A host certificate (OpenSSH line) for ``key`` (the server's host key: new at a start, or the key of
    the certificate it holds, :func:`renewable_certificate`) and this server's names, valid from ``now``
    for ``lifetime`` s; and its ``valid_before``."""
    principals = host_principals(username, server_name)
    valid_before = int(now + lifetime)
    cert = ca_key.generate_host_certificate(
        key, f"hardened-spawner {logical_target(username, server_name)}",
        principals=list(principals), valid_after=int(now) - CLOCK_SKEW, valid_before=valid_before)
    return cert.export_certificate("openssh").decode(), valid_before


@dataclass(frozen=True)
class HeldCertificate:
    """The host certificate a running server holds: its host key (public) and end of validity."""

    key: object        # asyncssh public key
    valid_before: int  # seconds since the epoch


def renewable_certificate(ca_lines, certificate, username, server_name):
    """The host certificate a running server holds (text read from its container), checked to be one this
    hub may renew: an OpenSSH host certificate, valid now, signed by a CA in ``ca_lines``, for exactly this
    server's names. Renewal certifies the key in it, which the container's user cannot change (the file is
    root-owned), never the private key file they own. ValueError says why not."""
    try:
        cert = asyncssh.import_certificate(certificate.strip())  # checks the CA's signature
    except (asyncssh.KeyImportError, ValueError) as e:
        raise ValueError(f"the server's host certificate cannot be read: {e}") from None
    if cert.is_x509 or cert.algorithm != HOST_CERT_ALGORITHM.encode():
        raise ValueError("the server's certificate is not an OpenSSH ed25519 host certificate")
    try:
        cert.validate(asyncssh.public_key.CERT_TYPE_HOST, None)
    except ValueError as e:  # expired: the hub was away too long; a restart makes a new host key
        raise ValueError(f"the server's host certificate is not a valid host certificate ({e}): "
                         "restart the server for a new one") from None
    signer = " ".join(cert.signing_key.export_public_key("openssh").decode().split()[:2])
    if signer not in ca_lines:
        raise ValueError("the server's host certificate is not signed by this hub's host CA")
    principals = host_principals(username, server_name)
    if tuple(cert.principals) != principals:
        raise ValueError(f"the server's host certificate is for {', '.join(cert.principals) or 'no name'}, "
                         f"not for {', '.join(principals)}")
    return HeldCertificate(cert.key, _valid_before(cert.public_data))


def _valid_before(blob):
    """``valid_before`` of an ed25519 certificate blob (OpenSSH PROTOCOL.certkeys: type, nonce, key,
    serial, type, key id, principals, valid after, valid before); asyncssh keeps it private."""
    packet = asyncssh.packet.SSHPacket(blob)
    for read in ("string", "string", "string", "uint64", "uint32", "string", "string", "uint64"):
        getattr(packet, f"get_{read}")()
    return packet.get_uint64()


def public_key_line(text):
    """``type base64`` of an OpenSSH public key line; ValueError when it is not one."""
    try:
        key = asyncssh.import_public_key(text.strip())
    except (asyncssh.KeyImportError, ValueError) as e:
        raise ValueError(f"{text.strip()[:40]!r} is not an OpenSSH public key: {e}") from None
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


class HostKeyRefused(Exception):
    """The server's sshd did not prove a host certificate from a trusted CA; the message says why."""


class _Probe(asyncssh.SSHClient):
    """Ends the connection once the key exchange succeeded, before any login is attempted."""

    conn = None
    verified = False

    def connection_made(self, conn):
        self.conn = conn

    def begin_auth(self, username):
        self.verified = True  # keys exchanged: the certificate and the server's signature were checked
        self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, "host certificate checked")


async def check_host_certificate(host, port, name, ca_lines, timeout=10.0):
    """Connect to ``host:port`` and check its sshd holds a host certificate for ``name`` from a CA in
    ``ca_lines`` (validity, principals and the key exchange's signature, all checked by asyncssh as
    for a ``@cert-authority`` line); no login is attempted. Raises :class:`HostKeyRefused` with the reason."""
    trusted = [asyncssh.import_public_key(line) for line in ca_lines]
    if not trusted:
        raise HostKeyRefused("the hub has no SSH certificate authority yet")
    probe = _Probe()
    try:
        conn = await asyncio.wait_for(asyncssh.connect(
            host, port, known_hosts=([], trusted, []), host_key_alias=name, username="hardened-spawner",
            server_host_key_algs=[HOST_CERT_ALGORITHM, "ssh-ed25519"], client_factory=lambda: probe,
            client_keys=None, agent_path=None, password=None, kbdint_auth=False, gss_auth=False, config=None,
            connect_timeout=timeout), timeout)
    except asyncssh.HostKeyNotVerifiable as e:  # a plain key, another CA, another name, expired
        raise HostKeyRefused(f"it has no host certificate for {name!r} from this hub's CA ({e.reason})") from None
    except asyncssh.KeyExchangeFailed as e:
        raise HostKeyRefused(f"it offers no ed25519 host key or certificate ({e.reason})") from None
    except (OSError, asyncssh.Error, asyncio.TimeoutError) as e:
        if not probe.verified:
            raise HostKeyRefused(f"its sshd does not answer ({getattr(e, 'reason', '') or e or 'timeout'})") from None
    else:
        conn.close()
    if not probe.verified:  # no key exchange was completed
        raise HostKeyRefused("its sshd ended the connection before the key exchange")
