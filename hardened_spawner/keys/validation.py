"""Check a user's ``authorized_keys`` text line by line: pure.

Each line is parsed with asyncssh. Accepted keys keep only their type and
key data: the user's options are replaced by the admin's forced set and
comments are dropped. Every other line is rejected with a reason that names
the line number and, where the key parsed, its SHA256 fingerprint, never the
key itself.
"""

from dataclasses import dataclass

from .sshlib import asyncssh

# Key types accepted by default. RSA is accepted from ``min_rsa_bits`` up;
# DSA never (1024-bit keys, removed from OpenSSH).
DEFAULT_KEY_TYPES = (
    "ssh-ed25519",
    "sk-ssh-ed25519@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa",
)
NEVER_ALLOWED_TYPES = ("ssh-dss",)
MIN_RSA_BITS_FLOOR = 3072
# restrict, then a terminal and local forwarding to the container's own loopback only
# (VS Code Remote-SSH); sshd_config in the image says the same (PermitOpen, AllowTcpForwarding local).
DEFAULT_FORCED_OPTIONS = 'restrict,pty,port-forwarding,permitopen="localhost:*",permitopen="127.0.0.1:*"'
# permitopen destinations that stay inside the container: its loopback, any port
LOOPBACK_OPEN = ("localhost", "127.0.0.1", "[::1]")

# authorized_keys options (sshd(8)) an admin may force, and the ones that
# would give back what ``restrict`` takes away or trust more than one key.
_SAFE_OPTIONS = {
    "restrict", "pty", "no-pty", "no-agent-forwarding", "no-port-forwarding", "no-user-rc",
    "no-x11-forwarding", "command", "from", "expiry-time", "verify-required",
}
_WIDENING_OPTIONS = {
    "agent-forwarding", "x11-forwarding", "user-rc",
    "permitlisten", "tunnel", "environment", "cert-authority", "principals", "no-touch-required",
}
MAX_LINE_LENGTH = 16384


@dataclass(frozen=True)
class KeyPolicy:
    """What the hub accepts: key types, the RSA floor, forced options, a count limit."""

    key_types: tuple = DEFAULT_KEY_TYPES
    min_rsa_bits: int = MIN_RSA_BITS_FLOOR
    forced_options: str = DEFAULT_FORCED_OPTIONS
    max_keys: int = 50


@dataclass(frozen=True)
class AcceptedKey:
    line: int
    key_type: str
    fingerprint: str
    bits: int
    public: str  # "<type> <base64>", no options, no comment

    def as_audit(self):
        return {"line": self.line, "type": self.key_type, "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class RejectedLine:
    line: int
    reason: str
    fingerprint: str = ""

    def as_audit(self):
        out = {"line": self.line, "reason": self.reason}
        if self.fingerprint:
            out["fingerprint"] = self.fingerprint
        return out

    def describe(self):
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class KeyCheck:
    accepted: tuple = ()
    rejected: tuple = ()

    @property
    def fingerprints(self):
        return [k.fingerprint for k in self.accepted]

    def as_audit(self):
        return {
            "accepted": [k.as_audit() for k in self.accepted],
            "rejected": [r.as_audit() for r in self.rejected],
        }


def split_options(line):
    """``(options, rest)``: the leading options field (quote-aware) and the key part.

    The options field is everything up to the first whitespace outside double
    quotes, as sshd reads it. A line that starts with a key type has no options.
    """
    in_quote = escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and in_quote:
            escaped = True
        elif ch == '"':
            in_quote = not in_quote
        elif ch in " \t" and not in_quote:
            return line[:i], line[i:].lstrip(" \t")
    return line, ""


def parse_options(text):
    """Option names in an options field, lower-cased; ``ValueError`` when it is malformed."""
    return [name for name, _ in parse_option_values(text)]


def parse_option_values(text):
    """``(name, value)`` of each option in an options field (name lower-cased, value unquoted or
    None); ``ValueError`` when it is malformed."""
    options, i, n = [], 0, len(text)
    while True:
        j = i
        while j < n and (text[j].isalnum() or text[j] in "-_"):
            j += 1
        name, value = text[i:j], None
        if not name:
            raise ValueError(f"expected an option name at character {i + 1}")
        i = j
        if i < n and text[i] == "=":
            if text[i + 1:i + 2] != '"':
                raise ValueError(f"the value of {name!r} must be in double quotes")
            i += 2
            start = i
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            if i >= n:
                raise ValueError(f"the value of {name!r} has no closing quote")
            value = text[start:i]
            i += 1
        options.append((name.lower(), value))
        if i == n:
            return options
        if text[i] != ",":
            raise ValueError(f"unexpected {text[i]!r} after {name!r}")
        i += 1


def _forwarding_problems(options):
    """``port-forwarding`` is safe only with ``permitopen`` naming the container's own loopback."""
    opens = [value for name, value in options if name == "permitopen"]
    problems = [f"permitopen={value!r} reaches beyond the container: only "
                + ", ".join(f"'{host}:<port>'" for host in LOOPBACK_OPEN) + " are allowed"
                for value in opens if (value or "").rpartition(":")[0] not in LOOPBACK_OPEN]
    if any(name == "port-forwarding" for name, _ in options) and not opens:
        problems.append("'port-forwarding' without permitopen would give back what 'restrict' takes away: "
                        'add permitopen="localhost:*" (the container\'s own loopback)')
    return problems


def forced_options_problems(options):
    """Why ``options`` cannot be the forced set (empty list when it can)."""
    try:
        parsed = parse_option_values(options)
    except ValueError as e:
        return [f"{options!r} is not a valid authorized_keys option list: {e}"]
    problems = []
    names = [name for name, _ in parsed]
    if "restrict" not in names:
        problems.append("must include 'restrict' (it turns off forwarding, agent, X11 and user rc)")
    for name in names:
        if name in _WIDENING_OPTIONS:
            problems.append(f"{name!r} would give back what 'restrict' takes away")
        elif name not in _SAFE_OPTIONS and name not in ("port-forwarding", "permitopen"):
            problems.append(f"{name!r} is not an option this hub knows to be safe")
    return problems + _forwarding_problems(parsed)


def policy_problems(policy):
    """Why ``policy`` is unsafe, as ``(field, message)`` pairs (empty when it is safe)."""
    problems = []
    for key_type in policy.key_types:
        if key_type in NEVER_ALLOWED_TYPES:
            problems.append(("key_types", f"{key_type} keys are never accepted (DSA is limited to 1024 bits)"))
        elif key_type not in DEFAULT_KEY_TYPES:
            problems.append(("key_types", f"{key_type!r} is not a key type this hub supports; choose from "
                             + ", ".join(DEFAULT_KEY_TYPES)))
    if policy.min_rsa_bits < MIN_RSA_BITS_FLOOR:
        problems.append(("min_rsa_bits",
                         f"RSA keys need at least {MIN_RSA_BITS_FLOOR} bits; {policy.min_rsa_bits} is too few"))
    if policy.max_keys < 1:
        problems.append(("max_keys", "at least one key per user must be allowed"))
    return problems + [("forced_options", m) for m in forced_options_problems(policy.forced_options)]


def parse_key(text):
    """The asyncssh public key in ``text`` (``type base64 [comment]``), or None."""
    try:
        return asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError, TypeError):
        return None


def _is_certificate(text):
    try:
        asyncssh.import_certificate(text)
    except (asyncssh.KeyImportError, ValueError, TypeError):
        return False
    return True


def _bits(key):
    pyca = getattr(key, "pyca_key", None)
    return getattr(pyca, "key_size", 0) or 0


def check_keys(text, policy):
    """Validate ``authorized_keys`` text against ``policy``; returns a :class:`KeyCheck`."""
    accepted, rejected, seen = [], [], {}
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_LINE_LENGTH:
            rejected.append(RejectedLine(number, f"longer than {MAX_LINE_LENGTH} characters"))
            continue
        rest = line
        key = parse_key(line)
        if key is None:
            _, rest = split_options(line)
            key = parse_key(rest) if rest else None
        if key is None:
            reason = ("certificates are not accepted here; add the plain public key"
                      if _is_certificate(line) or (rest and _is_certificate(rest))
                      else "not a valid OpenSSH public key")
            rejected.append(RejectedLine(number, reason))
            continue
        if key.get_comment_bytes() is not None:
            key.set_comment(None)
        key_type = key.algorithm.decode("ascii")
        fingerprint = key.get_fingerprint("sha256")
        bits = _bits(key)
        reason = None
        if key_type in NEVER_ALLOWED_TYPES:
            reason = "DSA (ssh-dss) keys are not accepted: they are limited to 1024 bits; use ed25519"
        elif key_type not in policy.key_types:
            reason = f"{key_type} keys are not accepted on this hub; use one of: " + ", ".join(policy.key_types)
        elif key_type == "ssh-rsa" and bits < policy.min_rsa_bits:
            reason = f"RSA key has {bits} bits; at least {policy.min_rsa_bits} are required (or use ed25519)"
        elif key.public_data in seen:
            reason = f"duplicate of the key on line {seen[key.public_data]}"
        elif len(accepted) >= policy.max_keys:
            reason = f"more than {policy.max_keys} keys; only the first {policy.max_keys} are used"
        if reason:
            rejected.append(RejectedLine(number, reason, fingerprint))
            continue
        seen[key.public_data] = number
        public = key.export_public_key("openssh").decode("ascii").strip()
        accepted.append(AcceptedKey(number, key_type, fingerprint, bits, public))
    return KeyCheck(tuple(accepted), tuple(rejected))


def render_authorized_keys(check, forced_options):
    """The ``authorized_keys`` file content for the accepted keys, each with the forced options."""
    return "".join(f"{forced_options} {key.public}\n" for key in check.accepted)
