"""Find dangerous grants in sudoers files. Pure: no I/O.

Parses the parts of the sudoers grammar that grant commands: user
specifications ``who host = (runas) TAG: cmd, cmd`` with line continuations,
``Cmnd_Alias`` definitions and tags that carry over to later commands of the
same specification. A grant is dangerous when it runs without a password
(``NOPASSWD``) or when the command is ``ALL``, a wildcard, a shell, an
interpreter, a package manager or an editor with a shell escape: each is root
(``sudo /opt/conda/bin/python -c 'import os; os.setuid(0)...'``).
"""

import posixpath
import re
from dataclasses import dataclass

# Commands that give a shell or run arbitrary code when run through sudo.
DANGEROUS = {
    "sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "ash", "busybox", "su", "sudo", "env",
    "python", "python2", "python3", "ipython", "jupyter", "perl", "ruby", "irb", "node", "nodejs", "php",
    "lua", "R", "Rscript", "julia", "tclsh", "wish", "awk", "gawk", "mawk", "find", "xargs",
    "conda", "mamba", "micromamba", "pip", "pip3", "pixi", "npm", "npx", "yarn", "gem", "cargo",
    "apt", "apt-get", "dpkg", "yum", "dnf", "rpm", "apk", "zypper", "pacman", "make", "git",
    "vi", "vim", "nvim", "view", "nano", "emacs", "less", "more", "man", "ed", "tee", "cp", "mv",
    "dd", "chmod", "chown", "docker", "systemctl", "crontab", "ssh", "scp", "rsync", "tar", "zip",
}
_VERSIONED = re.compile(r"^(python|pip|perl|ruby|node|lua|php)[\d.]*m?$")
_TAGS = re.compile(r"^(NO)?(PASSWD|EXEC|SETENV|LOG_INPUT|LOG_OUTPUT|MAIL|FOLLOW|INTERCEPT|NOPASSWD)$")
_ALIAS_KINDS = ("User_Alias", "Runas_Alias", "Host_Alias", "Cmnd_Alias", "Cmd_Alias")


@dataclass(frozen=True)
class Grant:
    file: str
    line: int
    who: str
    command: str
    nopasswd: bool

    def describe(self):
        return f"{self.file}:{self.line}: {self.who} may run {self.command}" + (
            " without a password" if self.nopasswd else "")


def logical_lines(text):
    """``(line number, text)`` with comments removed and ``\\`` continuations joined."""
    out, buf, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw
        stripped = line.lstrip()
        if stripped.startswith(("#include", "#includedir")):
            line = ""  # include directives: the caller reads /etc/sudoers.d itself
        elif "#" in line and not re.match(r"^\s*#\d", line):
            line = re.sub(r"(?<!\\)#(?!\d).*$", "", line)
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            out.append((start, buf.strip()))
        buf = ""
    if buf.strip():
        out.append((start, buf.strip()))
    return out


def _split_commas(text):
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _commands(spec_rhs):
    """``(command, nopasswd)`` pairs of one ``host = ...`` right-hand side."""
    nopasswd = False
    for item in _split_commas(spec_rhs):
        item = re.sub(r"^\([^)]*\)\s*", "", item)  # runas list
        while True:
            match = re.match(r"^([A-Z_]+):\s*", item)
            if not match or not _TAGS.match(match[1]):
                break
            tag = match[1]
            if tag == "NOPASSWD":
                nopasswd = True
            elif tag == "PASSWD":
                nopasswd = False
            item = item[match.end():]
        item = item.lstrip("!").strip()
        if item:
            yield item, nopasswd


def grants(files):
    """Every command grant in ``files`` (a mapping of path to text)."""
    aliases, specs, no_auth = {}, [], set()  # no_auth: users ("*" for all) with !authenticate
    for path, text in files.items():
        for number, line in logical_lines(text):
            word = line.split(None, 1)[0]
            if word.startswith("Defaults"):
                if re.search(r"(^|[\s,])!\s*authenticate\b", line):
                    scope = word[len("Defaults"):]
                    no_auth.update(principals(scope[1:]) if scope.startswith(":") else ["*"])
                continue
            if word in _ALIAS_KINDS:
                for definition in re.split(r":(?=\s*[A-Z][A-Z0-9_]*\s*=)", line[len(word):]):
                    name, sep, value = definition.partition("=")
                    if sep:
                        aliases[name.strip()] = _split_commas(value)
                continue
            lhs, eq, rhs = line.partition("=")
            if not eq:
                continue
            words = lhs.rsplit(None, 1)
            who = words[0].strip() if len(words) == 2 else lhs.strip()
            parts = re.split(r":(?=\s*[^=:,()]+=)", rhs)
            for index, part in enumerate(parts):
                commands = part if index == 0 else part.partition("=")[2]
                for command, nopasswd in _commands(commands):
                    specs.append((path, number, who, command, nopasswd))
    out = []
    for path, number, who, command, nopasswd in specs:
        for expanded in _expand(command, aliases, set()):
            unauthenticated = "*" in no_auth or bool(no_auth & set(principals(who)))
            out.append(Grant(path, number, who, expanded, nopasswd or unauthenticated))
    return out


def principals(who):
    """The users and ``%groups`` a specification's user list names."""
    return [w.strip().lstrip("!") for w in _split_commas(who)]


def _expand(command, aliases, seen):
    name = command.split()[0] if command.split() else command
    if name in aliases and name not in seen:
        for item in aliases[name]:
            yield from _expand(item.lstrip("!").strip(), aliases, seen | {name})
    else:
        yield command


def dangerous(command):
    """Why running ``command`` through sudo is root, or ``None``."""
    program = command.split()[0] if command.split() else command
    if program == "ALL":
        return "ALL commands"
    if program == "sudoedit":
        return None
    base = posixpath.basename(program)
    if any(ch in program for ch in "*?["):
        return f"a wildcard ({program}), which matches interpreters and shells"
    if base in DANGEROUS or _VERSIONED.match(base):
        return f"{base}, which runs arbitrary code as root"
    return None
