"""Which uid and gid a Docker ``USER`` really means, read against the image's own account files. Pure.

Docker resolves ``USER name[:group]`` the way runc's ``GetExecUser`` does: a
number is a uid (``00`` and ``+0`` are uid 0), a name is looked up in the
image's ``/etc/passwd``, a group likewise in ``/etc/group``; with no group,
the gid is the passwd entry's (``0`` for a uid that has none). So ``root``
is not the only name for uid 0: ``toor:x:0:0`` is root too. The spawner
therefore never hands Docker a name: it resolves the spec here and creates
the container with an explicit numeric ``uid:gid``.
"""

import re
from dataclasses import dataclass

_NUMBER = re.compile(r"^\+?[0-9]+$")  # what Go's strconv.Atoi accepts for a non-negative id
MAX_ID = 2**31 - 1


class UnknownUser(ValueError):
    """A USER (or group) name the image's account files do not know; Docker would refuse to start it."""


@dataclass(frozen=True)
class Resolved:
    uid: int
    gid: int
    name: str  # the login name in the image's passwd, "" when it has none

    @property
    def spec(self):
        return f"{self.uid}:{self.gid}"


def _table(text, fields):
    rows = []
    for line in (text or "").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) >= fields and _NUMBER.match(parts[2]):
            rows.append(parts)
    return rows


def _number(value):
    if _NUMBER.match(value):
        number = int(value)
        if number > MAX_ID:
            raise UnknownUser(f"{value} is not a valid id (above {MAX_ID})")
        return number
    return None


def resolve(spec, passwd="", group=""):
    """The :class:`Resolved` uid and gid of Docker user ``spec`` (``""`` means root) in an image.

    Raises :class:`UnknownUser` when a name is not in the image's account files.
    """
    user, _, grp = (spec or "").strip().partition(":")
    user = user.strip() or "0"
    users = _table(passwd, 7)
    uid = _number(user)
    entry = next((p for p in users if (int(p[2]) == uid if uid is not None else p[0] == user)), None)
    if uid is None:
        if entry is None:
            raise UnknownUser(f"user {user!r} is not in the image's /etc/passwd")
        uid = int(entry[2])
    if grp.strip():
        gid = _number(grp.strip())
        if gid is None:
            found = next((g for g in _table(group, 3) if g[0] == grp.strip()), None)
            if found is None:
                raise UnknownUser(f"group {grp.strip()!r} is not in the image's /etc/group")
            gid = int(found[2])
    else:
        gid = int(entry[3]) if entry is not None and _NUMBER.match(entry[3]) else 0
    return Resolved(uid, gid, entry[0] if entry is not None else "")


def is_root(spec, passwd="", group=""):
    """True when ``spec`` runs as uid 0 in the image (a name that does not resolve is not root: Docker refuses it)."""
    try:
        return resolve(spec, passwd, group).uid == 0
    except UnknownUser:
        return False
