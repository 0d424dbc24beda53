"""Users' own SSH keys as entries: list, check a pasted key, add, remove. Pure.

A store keeps a user's keys as ``authorized_keys`` text. Keys added through
the hub are written as ``<type> <base64> <comment>`` preceded by a marker
comment recording when::

    # hs-added 2026-12-02T10:15:00Z
    ssh-ed25519 AAAAC3Nza... alice@laptop

sshd never reads this text directly (the hub renders the delivered file
with the forced options), and :func:`~.validation.check_keys` skips comment
lines, so admins may still edit the text by hand; keys without a marker
simply have no date.

A pasted key is refused, with a reason a user can act on, when it is not a
single plain public key the policy accepts: not UTF-8, too long, a private
key, a PEM/RFC 4716 public key, several lines, options, a certificate, a
rejected type or size, a duplicate, or one key too many. The reason never
contains the pasted text.
"""

import re
from dataclasses import dataclass

from .validation import MAX_LINE_LENGTH, check_keys, parse_key, split_options

ADDED_MARKER = "# hs-added "
_MARKER = re.compile(r"^# hs-added (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\s*$")
MAX_PASTE_BYTES = MAX_LINE_LENGTH
MAX_COMMENT = 100
_PRIVATE_MARKERS = ("PRIVATE KEY-----", "PuTTY-User-Key-File", "-----BEGIN OPENSSH PRIVATE KEY")


class KeyRefused(ValueError):
    """A pasted key the hub will not add; the message says why and what to do."""


@dataclass(frozen=True)
class KeyEntry:
    """One key line of a user's text, as the keys page lists it."""

    line: int
    key_type: str
    fingerprint: str
    comment: str
    added: str  # ISO-8601 UTC, "" when unknown
    problem: str  # "" when the key is used; else why it is not
    public: str  # "<type> <base64>", "" when the line did not parse

    @property
    def usable(self):
        return not self.problem

    def as_dict(self, source=""):
        return {"type": self.key_type, "fingerprint": self.fingerprint, "comment": self.comment,
                "added": self.added, "usable": self.usable, "problem": self.problem,
                "public": self.public, "source": source}


def clean_comment(comment):
    """A comment safe to show and store: printable, one line, at most MAX_COMMENT characters."""
    text = "".join(ch if ch.isprintable() else " " for ch in (comment or "")).strip()
    return " ".join(text.split())[:MAX_COMMENT]


def _line_key(line):
    """``(key, had_options)`` for one authorized_keys line; key is None when it does not parse."""
    key = parse_key(line)
    if key is not None:
        return key, False
    _, rest = split_options(line)
    return (parse_key(rest) if rest else None), True


def list_entries(text, policy):
    """Every key line of ``text`` as a :class:`KeyEntry`, in order."""
    check = check_keys(text or "", policy)
    accepted = {k.line: k for k in check.accepted}
    rejected = {r.line: r for r in check.rejected}
    entries, added = [], ""
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip()
        marker = _MARKER.match(line)
        if marker:
            added = marker.group(1)
            continue
        if not line or line.startswith("#"):
            added = ""
            continue
        key, _ = _line_key(line) if len(line) <= MAX_LINE_LENGTH else (None, False)
        comment = clean_comment(key.get_comment() if key is not None else "")
        if number in accepted:
            ok = accepted[number]
            entries.append(KeyEntry(number, ok.key_type, ok.fingerprint, comment, added, "", ok.public))
        elif number in rejected:
            bad = rejected[number]
            key_type = key.algorithm.decode("ascii") if key is not None else ""
            public = " ".join(key.export_public_key("openssh").decode("ascii").split()[:2]) if key else ""
            entries.append(KeyEntry(number, key_type, bad.fingerprint, comment, added, bad.reason, public))
        added = ""
    return entries


def refuse_unless_public_key(pasted):
    """The one stripped line of ``pasted`` (bytes or str), or :class:`KeyRefused` saying why not."""
    if isinstance(pasted, (bytes, bytearray)):
        if len(pasted) > MAX_PASTE_BYTES:
            raise _too_long(len(pasted))
        try:
            pasted = bytes(pasted).decode("utf-8")
        except UnicodeDecodeError:
            raise KeyRefused("That is not UTF-8 text. Paste the one line of your public key file "
                             "(e.g. ~/.ssh/id_ed25519.pub), which is plain ASCII.") from None
    size = len(pasted.encode("utf-8", "surrogatepass"))
    if size > MAX_PASTE_BYTES:
        raise _too_long(size)
    if any(marker in pasted for marker in _PRIVATE_MARKERS):
        raise KeyRefused("That is a PRIVATE key, which must never leave your machine; it was not saved. "
                         "Paste the PUBLIC key instead: the content of the matching .pub file "
                         "(e.g. ~/.ssh/id_ed25519.pub).")
    if "BEGIN PUBLIC KEY" in pasted or "BEGIN SSH2 PUBLIC KEY" in pasted:
        raise KeyRefused("That is a public key in PEM or RFC 4716 format. Convert it to OpenSSH's "
                         "one-line format with: ssh-keygen -i -f KEYFILE (or -m PKCS8), then paste that line.")
    lines = [line.strip() for line in pasted.splitlines() if line.strip()]
    if not lines:
        raise KeyRefused("Paste a public key: the one line of your .pub file, starting with its type "
                         "(e.g. ssh-ed25519).")
    if len(lines) > 1:
        raise KeyRefused(f"That is {len(lines)} lines; add one key at a time (the one line of a .pub file).")
    return lines[0]


def _too_long(size):
    return KeyRefused(f"That is {size} bytes; a public key is one line of at most {MAX_PASTE_BYTES} bytes. "
                      "Paste only the content of your .pub file.")


def check_new_key(pasted, existing_text, policy):
    """The line to store for a pasted key and its checked form, or :class:`KeyRefused`.

    Returns ``(line, accepted)`` where ``line`` is ``<type> <base64> [comment]``
    and ``accepted`` the :class:`~.validation.AcceptedKey`.
    """
    line = refuse_unless_public_key(pasted)
    key, had_options = _line_key(line)
    if key is not None and had_options:
        raise KeyRefused("That line starts with authorized_keys options (such as command= or from=). "
                         f"The hub sets the options itself ({policy.forced_options}); paste the key "
                         "starting with its type, e.g. ssh-ed25519 AAAA... you@laptop.")
    check = check_keys(line, policy)
    if check.rejected:
        reason = check.rejected[0].reason
        if reason == "not a valid OpenSSH public key":
            reason = ("That is not an OpenSSH public key. Paste the one line of your .pub file, "
                      "e.g. ssh-ed25519 AAAA... you@laptop")
        raise KeyRefused(reason[0].upper() + reason[1:] + ("" if reason.endswith(".") else "."))
    (accepted,) = check.accepted
    current = list_entries(existing_text, policy)
    for entry in current:
        if entry.public == accepted.public:
            raise KeyRefused(f"This key is already in the list ({accepted.fingerprint}).")
    usable = sum(1 for entry in current if entry.usable)
    if usable >= policy.max_keys:
        raise KeyRefused(f"You have {usable} keys, the most this hub allows; remove one first.")
    comment = clean_comment(key.get_comment())
    return (accepted.public + (f" {comment}" if comment else "")), accepted


def add_line(text, line, added):
    """``text`` with ``line`` appended after a marker recording ``added`` (ISO-8601 UTC)."""
    text = text or ""
    if text and not text.endswith("\n"):
        text += "\n"
    return f"{text}{ADDED_MARKER}{added}\n{line}\n"


def remove_fingerprint(text, fingerprint):
    """``(new text, removed count)``: every line holding the key ``fingerprint`` dropped, with its marker."""
    out, removed = [], 0
    for raw in (text or "").splitlines(keepends=True):
        line = raw.strip()
        key = None
        if line and not line.startswith("#") and len(line) <= MAX_LINE_LENGTH:
            key, _ = _line_key(line)
        if key is not None and key.get_fingerprint("sha256") == fingerprint:
            removed += 1
            if out and _MARKER.match(out[-1].strip()):
                out.pop()
            continue
        out.append(raw)
    return "".join(out), removed
