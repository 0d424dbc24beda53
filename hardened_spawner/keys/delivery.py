"""Pure helpers for putting validated keys into a container before it starts.

The keys travel as a tar archive through Docker's ``put_archive`` into
``/etc/ssh/authorized_keys/<container user>`` (root-owned, 0644), so they are
never in the image, the environment, labels, the command line or a file on
the hub host.
"""

import io
import tarfile
import time

from ..decisions import users

KEYS_DIR = "/etc/ssh/authorized_keys"
# The container's host key and certificate (:mod:`.host_certs`), beside the keys files
# in a directory no login name can take (none starts with a dot).
HOST_KEY_DIR = ".host"
HOST_KEY_FILE = "ssh_host_ed25519_key"
HOST_CERT_FILE = HOST_KEY_FILE + "-cert.pub"


def keys_archive(filename, text, mtime=None, host_key=None, host_owner=(0, 0)):
    """A tar archive holding one root-owned 0644 file ``filename`` with ``text``.

    With ``host_key`` (:class:`.host_certs.HostKey`) it also holds the container's host
    key, owned by ``host_owner`` (the uid and gid sshd runs as) with mode 0600, and its
    certificate (root, 0644), in the root-owned directory ``.host``.
    """
    members = [(filename, text, 0o644, (0, 0))]
    if host_key is not None:
        members += [(f"{HOST_KEY_DIR}/{HOST_KEY_FILE}", host_key.private, 0o600, host_owner),
                    (f"{HOST_KEY_DIR}/{HOST_CERT_FILE}", host_key.certificate, 0o644, (0, 0))]
    return _archive(members, mtime, with_host_dir=host_key is not None)


def host_cert_archive(certificate, mtime=None):
    """A tar archive holding only the container's renewed host certificate (root, 0644) in ``.host``."""
    return _archive([(f"{HOST_KEY_DIR}/{HOST_CERT_FILE}", certificate, 0o644, (0, 0))], mtime)


def _archive(members, mtime, with_host_dir=False):
    """A tar archive of ``(name, text, mode, (uid, gid))`` files, after the ``.host`` directory if asked."""
    mtime = int(time.time() if mtime is None else mtime)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if with_host_dir:
            tar.addfile(_info(HOST_KEY_DIR, tarfile.DIRTYPE, 0o755, (0, 0), mtime))
        for name, content, mode, owner in members:
            data = content.encode("ascii")
            info = _info(name, tarfile.REGTYPE, mode, owner, mtime)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _info(name, kind, mode, owner, mtime):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, mtime
    info.uid, info.gid = owner
    if owner == (0, 0):
        info.uname = info.gname = "root"
    return info


def file_from_archive(archive):
    """Content of the single regular file in a tar archive (what ``get_archive`` returns)."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                return tar.extractfile(member).read()
    raise ValueError("the archive holds no regular file")


def container_user_name(passwd, user_spec):
    """The login name of ``user_spec`` (``name``, ``uid`` or ``uid:gid``) in an ``/etc/passwd`` text,
    resolved as Docker resolves USER (:func:`..decisions.users.resolve`).

    Returns None when the image has no such account (sshd cannot log in to it).
    """
    try:
        return users.resolve((user_spec or "").split(":", 1)[0], passwd).name or None
    except users.UnknownUser:
        return None
