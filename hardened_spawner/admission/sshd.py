"""Evaluate an image's sshd configuration for root and password logins. Pure: no I/O.

Follows sshd's rules: keywords are case-insensitive, the first value obtained
wins, ``Include`` expands globs (relative to /etc/ssh) in place, and lines
after ``Match`` apply only to matching connections. A permissive value inside
any ``Match`` block counts, since some connection can match it. Unset
keywords take OpenSSH's defaults (PermitRootLogin prohibit-password,
PasswordAuthentication yes, KbdInteractiveAuthentication yes).
"""

import fnmatch
import posixpath
import re
import shlex

DEFAULTS = {"permitrootlogin": "prohibit-password", "passwordauthentication": "yes",
            "kbdinteractiveauthentication": "yes", "usepam": "no", "authenticationmethods": "any",
            "permitemptypasswords": "no"}
_ALIASES = {"challengeresponseauthentication": "kbdinteractiveauthentication"}
_PASSWORD_METHODS = ("password", "keyboard-interactive")


_LINE = re.compile(r"^([^\s=]+)\s*(?:=\s*|\s+)?(.*)$")


def _tokens(line):
    """``(keyword, args)`` of a config line: ``Keyword value`` or ``Keyword=value``."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    match = _LINE.match(line)
    if not match:  # a line sshd itself would reject ("= x"): it sets nothing
        return None
    keyword, rest = match.groups()
    try:
        args = shlex.split(rest, comments=True)
    except ValueError:
        args = rest.split()
    return keyword.lower(), args


def directives(path, files, depth=0, in_match=None):
    """``(keyword, args, match, where)`` in file order, with Include expanded."""
    text = files.get(path)
    if text is None or depth > 16:
        return
    match = in_match
    for number, raw in enumerate(text.decode("utf-8", "replace").splitlines(), 1):
        parsed = _tokens(raw)
        if not parsed:
            continue
        keyword, args = parsed
        keyword = _ALIASES.get(keyword, keyword)
        if keyword == "match":
            match = " ".join(args) or "all"
            if match.lower() == "all":
                match = in_match
            continue
        if keyword == "include":
            for pattern in args:
                pattern = pattern if pattern.startswith("/") else posixpath.join("/etc/ssh", pattern)
                for included in sorted(p for p in files if fnmatch.fnmatchcase(p, pattern)):
                    yield from directives(included, files, depth + 1, match)
            continue
        yield keyword, args, match, f"{path}:{number}"


def settings(path, files):
    """The effective global value of each keyword, and every value set inside Match blocks."""
    effective, conditional = {}, []
    for keyword, args, match, where in directives(path, files):
        value = " ".join(args)
        if match is None:
            effective.setdefault(keyword, (value, where))
        else:
            conditional.append((keyword, value, match, where))
    return effective, conditional


def _value(effective, keyword):
    value, where = effective.get(keyword, (DEFAULTS.get(keyword, ""), "default"))
    return value.lower(), where


def _passwords(values):
    """Whether these settings let a password through, and which setting does."""
    methods = values["authenticationmethods"][0]
    if methods != "any" and not any(m in methods for m in _PASSWORD_METHODS):
        return None
    if values["passwordauthentication"][0] == "yes":
        return "PasswordAuthentication yes", values["passwordauthentication"][1]
    if values["kbdinteractiveauthentication"][0] == "yes" and values["usepam"][0] == "yes":
        return "KbdInteractiveAuthentication yes with UsePAM yes", values["kbdinteractiveauthentication"][1]
    return None


def evaluate(path, files):
    """``(root_login, password_login)`` problems as lists of sentences (empty: none)."""
    if path not in files:
        return [], []
    effective, conditional = settings(path, files)
    keys = ("permitrootlogin", "passwordauthentication", "kbdinteractiveauthentication", "usepam",
            "authenticationmethods")
    values = {k: _value(effective, k) for k in keys}
    root, password = [], []

    def where(w):
        return "by default (not set)" if w == "default" else f"at {w}"

    if values["permitrootlogin"][0] != "no":
        root.append(f"PermitRootLogin is {values['permitrootlogin'][0]} {where(values['permitrootlogin'][1])}")
    found = _passwords(values)
    if found:
        password.append(f"{found[0]} {where(found[1])}")
    for keyword, value, match, at in conditional:
        if keyword == "permitrootlogin" and value.lower() != "no":
            root.append(f"PermitRootLogin {value} in 'Match {match}' at {at}")
        if keyword in keys[1:]:
            scoped = dict(values)
            scoped[keyword] = (value.lower(), at)
            found = _passwords(scoped)
            if found and not _passwords(values):
                password.append(f"{found[0]} in 'Match {match}' at {at}")
    return root, password
