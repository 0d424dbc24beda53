"""Content rules on an image's config and files. Pure: no I/O.

Each function takes what it checks (the image's ``Config``, :class:`ImageFacts`,
the policy) and adds violations to a :class:`~.model.Violations`.
"""

import datetime
import fnmatch
import posixpath
import re

from ..decisions import users
from . import sshd, sudoers

_SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|_KEY$|^KEY$|APIKEY|PRIVATE)", re.IGNORECASE)
_PRIVATE_KEY = re.compile(rb"-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----|PuTTY-User-Key-File")
_HOST_KEY = re.compile(r"^ssh_host_[a-z0-9]+_key$")
MAX_LISTED = 10


def _listing(items):
    items = list(items)
    shown = "; ".join(items[:MAX_LISTED])
    return shown + (f"; and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def user_root(config, facts, out):
    """USER resolved against the image's own /etc/passwd and /etc/group: ``00``, ``+0`` and ``toor`` are root too."""
    spec = config.get("User") or ""
    passwd, group = (facts.files.get(p, b"").decode("utf-8", "replace") for p in ("/etc/passwd", "/etc/group"))
    try:
        resolved = users.resolve(spec, passwd, group)
    except users.UnknownUser as e:
        out.add("image.user-unknown", f"The image's USER {spec!r} cannot be resolved: {e}.")
        return
    if resolved.uid == 0:
        named = f"{spec!r} (uid 0)" if spec and spec.split(":")[0] not in ("root", "0") else (spec or "root (no USER set)")
        out.add("image.user-root", f"The image runs as {named}.")


GPU_ENV = ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")


def gpu_env(config, out):
    """GPU selection baked into the image's environment (CUDA bases set NVIDIA_VISIBLE_DEVICES=all)."""
    names = sorted({item.partition("=")[0] for item in config.get("Env") or []
                    if item.partition("=")[0] in GPU_ENV or item.startswith("DOCKER_RESOURCE_")})
    if names:
        out.add("image.gpu-env", f"The image's environment sets {', '.join(names)}.")


def env_secrets(config, allowlist, out):
    names = []
    for item in config.get("Env") or []:
        name, _, value = item.partition("=")
        if value and _SECRET_NAME.search(name) and name not in allowlist:
            names.append(name)  # never the value: decisions are logged
    if names:
        out.add("image.env-secret", f"The image's environment sets {', '.join(sorted(names))} "
                "(looks like a secret; the value is not shown).")


def baked_keys(facts, homes_ssh, out):
    """Private keys and authorized_keys in /etc/ssh and the homes' .ssh directories."""
    private, authorized = [], []
    places = ["/etc/ssh"] + list(homes_ssh)
    for place in places:
        for path, entry in sorted(facts.under(place).items()):
            if entry.type != "file":
                continue
            name = posixpath.basename(path)
            data = facts.files.get(path, b"")
            if _PRIVATE_KEY.search(data) or (place == "/etc/ssh" and _HOST_KEY.match(name)):
                private.append(path)
            elif name.startswith("authorized_keys") or path.startswith("/etc/ssh/authorized_keys/"):
                if re.search(rb"(ssh|ecdsa|sk)-[a-z0-9@.-]+ +AAAA", data):
                    authorized.append(path)
    if private:
        out.add("image.baked-private-key", f"The image contains private keys: {_listing(private)}.")
    if authorized:
        out.add("image.baked-authorized-keys", f"The image contains authorized_keys: {_listing(authorized)}.")


def sshd_config(facts, path, out):
    root, password = sshd.evaluate(path, facts.files)
    if root:
        out.add("sshd.root-login", f"{path}: {_listing(root)}.")
    if password:
        out.add("sshd.password-auth", f"{path}: {_listing(password)}.")


def _members(facts):
    """Group name -> member user names (from /etc/group and primary groups in /etc/passwd)."""
    gids, members = {}, {}
    for line in facts.files.get("/etc/group", b"").decode("utf-8", "replace").splitlines():
        parts = line.split(":")
        if len(parts) >= 4:
            gids[parts[2]] = parts[0]
            members.setdefault(parts[0], set()).update(u for u in parts[3].split(",") if u)
    for line in facts.files.get("/etc/passwd", b"").decode("utf-8", "replace").splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[3] in gids:
            members.setdefault(gids[parts[3]], set()).add(parts[0])
    return members


def _reaches_non_root(who, members, have_groups):
    for principal in sudoers.principals(who):
        if principal.startswith("%"):
            group = principal[1:].lstrip(":")
            if not have_groups or (members.get(group, set()) - {"root"}):
                return True
        elif principal not in ("root", "#0"):
            return True
    return False


def sudo(facts, out):
    """NOPASSWD and root-equivalent grants that reach a user other than root."""
    files = {}
    for path in sorted(facts.files):
        name = posixpath.basename(path)
        if path == "/etc/sudoers" or (path.startswith("/etc/sudoers.d/") and "." not in name and not name.endswith("~")):
            files[path] = facts.files[path].decode("utf-8", "replace")
    members = _members(facts)
    nopasswd, dangerous = [], []
    for grant in sudoers.grants(files):
        if not _reaches_non_root(grant.who, members, "/etc/group" in facts.files):
            continue
        why = sudoers.dangerous(grant.command)
        if why:
            dangerous.append(f"{grant.describe()} ({why})")
        if grant.nopasswd:
            nopasswd.append(grant.describe())
    if dangerous:
        out.add("sudo.interpreter-grant", f"sudo grants root: {_listing(dangerous)}.")
    if nopasswd:
        out.add("sudo.nopasswd", f"sudo runs commands without a password: {_listing(nopasswd)}.")


def setuid(facts, paths, allowlist, out):
    found = []
    for root in paths:
        for path, entry in sorted(facts.under(root).items()):
            if (entry.type in ("file", "hardlink") and entry.mode & 0o6000
                    and not any(fnmatch.fnmatchcase(path, p) for p in allowlist)):
                bits = "setuid" if entry.mode & 0o4000 else "setgid"
                found.append(f"{path} ({bits}, mode {entry.mode:o})")
    if found:
        out.add("image.setuid-binary", f"The image has setuid/setgid binaries: {_listing(sorted(set(found)))}.")


def created(image_info):
    value = image_info.get("Created") or ""
    match = re.match(r"^(\d{4}-\d{2}-\d{2})T", value)
    return datetime.date.fromisoformat(match[1]) if match else None


def image_age(image_info, today, max_days, out):
    day = created(image_info)
    if max_days and day and (today - day).days > max_days:
        out.add("image.too-old", f"The image was built on {day.isoformat()}, {(today - day).days} days ago "
                f"(the limit is {max_days} days).")


def healthcheck(config, out):
    test = (config.get("Healthcheck") or {}).get("Test") or []
    if not test or test[0] == "NONE":
        out.add("image.no-healthcheck", "The image has no HEALTHCHECK.")
