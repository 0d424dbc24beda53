"""Read a tar stream's headers, keeping the data of only the members asked for.

Docker's archive endpoint sends whole directories; admission needs the names
and modes of most members and the contents of a few. :func:`scan` parses
ustar, PAX and GNU headers from an iterable of byte chunks and skips file
data without copying it, which is several times faster than :mod:`tarfile`
on a stream of thousands of small files; the members asked for are hashed
(sha256) as they pass, without keeping their data. Pure: no I/O.
"""

import hashlib
from dataclasses import dataclass

BLOCK = 512
_TYPES = {b"0": "file", b"\0": "file", b"7": "file", b"1": "hardlink", b"2": "symlink", b"5": "dir"}
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")


class TarError(ValueError):
    """The stream is not a tar archive (or is truncated or corrupt)."""


@dataclass(frozen=True)
class Member:
    name: str
    mode: int
    type: str  # file, dir, symlink, hardlink or other
    size: int
    linkname: str = ""
    data: bytes | None = None
    sha256: str | None = None  # hex, for the regular files ``digest`` asked for


class _Chunks:
    """Read or skip byte counts across a sequence of chunks, copying only what is read."""

    def __init__(self, chunks):
        self._it = iter(chunks)
        self._chunk = b""
        self._pos = 0

    def _next(self):
        for chunk in self._it:
            if chunk:
                self._chunk, self._pos = chunk, 0
                return True
        return False

    def read(self, n):
        parts = []
        while n > 0:
            if self._pos >= len(self._chunk) and not self._next():
                break
            part = self._chunk[self._pos:self._pos + n]
            self._pos += len(part)
            n -= len(part)
            parts.append(part)
        return b"".join(parts)

    def feed(self, n, sink):
        """Pass the next ``n`` bytes to ``sink`` a slice at a time (nothing joined)."""
        while n > 0:
            left = len(self._chunk) - self._pos
            if left <= 0:
                if not self._next():
                    raise TarError("truncated archive: member data ends early")
                continue
            step = min(left, n)
            sink(memoryview(self._chunk)[self._pos:self._pos + step])
            self._pos += step
            n -= step

    def skip(self, n):
        while n > 0:
            left = len(self._chunk) - self._pos
            if left <= 0:
                if not self._next():
                    raise TarError("truncated archive: member data ends early")
                continue
            step = min(left, n)
            self._pos += step
            n -= step


def _number(field):
    if field[:1] and field[0] & 0x80:  # GNU base-256 for large values
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarError(f"bad numeric field {field!r} in tar header") from None


def _text(field):
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data):
    records = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise TarError("malformed PAX record")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarError("malformed PAX record length") from None
        if length <= 0 or pos + length > len(data) or data[pos + length - 1:pos + length] != b"\n":
            raise TarError("malformed PAX record")
        key, sep, value = data[space + 1:pos + length - 1].partition(b"=")
        if not sep:
            raise TarError("malformed PAX record")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def _padded(size):
    return (size + BLOCK - 1) // BLOCK * BLOCK


def scan(chunks, keep=lambda name, size: False, digest=lambda name: False):
    """Yield each :class:`Member` of the tar stream ``chunks``.

    ``keep(name, size)`` says whether to read a regular file's data into
    ``Member.data``; ``digest(name)`` whether to hash it into ``Member.sha256``
    (for a file not kept); every other member's data is skipped.
    """
    stream = _Chunks(chunks)
    pending = {}
    while True:
        block = stream.read(BLOCK)
        if not block:
            return
        if len(block) < BLOCK:
            raise TarError("truncated archive: partial header")
        if block == bytes(BLOCK):
            return
        stored = _number(block[148:156])
        if stored != sum(block[:148]) + 256 + sum(block[156:]):
            raise TarError("bad tar header checksum")
        kind = block[156:157]
        size = _number(block[124:136])
        if kind in (b"x", b"g", b"L", b"K"):
            data = stream.read(_padded(size))[:size]
            if len(data) < size:
                raise TarError("truncated archive: extended header ends early")
            if kind == b"x":
                pending.update(_pax(data))
            elif kind == b"L":
                pending["path"] = _text(data)
            elif kind == b"K":
                pending["linkpath"] = _text(data)
            continue
        name = _text(block[0:100])
        if block[257:262] == b"ustar":
            prefix = _text(block[345:500])
            if prefix:
                name = f"{prefix}/{name}"
        name = pending.get("path", name)
        linkname = pending.get("linkpath", _text(block[157:257]))
        if "size" in pending:
            try:
                size = int(pending["size"])
            except ValueError:
                raise TarError("malformed PAX size") from None
        pending = {}
        mtype = _TYPES.get(kind, "other")
        # As in tarfile: links, directories, devices and FIFOs carry no data.
        size_in_stream = 0 if kind in _NO_DATA else size
        data = sha256 = None
        if mtype == "file" and keep(name, size):
            data = stream.read(size)
            if len(data) < size:
                raise TarError("truncated archive: member data ends early")
            stream.skip(_padded(size) - size)
        elif mtype == "file" and digest(name):
            hasher = hashlib.sha256()
            stream.feed(size, hasher.update)
            sha256 = hasher.hexdigest()
            stream.skip(_padded(size) - size)
        else:
            stream.skip(_padded(size_in_stream))
        yield Member(name.rstrip("/") or name, _number(block[100:108]) & 0o7777, mtype, size, linkname, data, sha256)
