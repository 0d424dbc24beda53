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


def keys_archive(filename, text, mtime=None):
    """A tar archive holding one root-owned 0644 file ``filename`` with ``text``."""
    data = text.encode("ascii")
    info = tarfile.TarInfo(filename)
    info.size = len(data)
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = int(time.time() if mtime is None else mtime)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


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
