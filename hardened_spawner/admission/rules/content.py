"""Content rules: on what is inside the image, its config and a few files, read without running it. Pure: no I/O."""

import datetime
import fnmatch
import posixpath
import re

from .. import sshd, sudoers
from ...decisions import users
from .base import Family, listing

FAMILY = Family("content", "Content rules", "admission-content-rules.md", needs=("image",))
rule = FAMILY.rule

_SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|_KEY$|^KEY$|APIKEY|PRIVATE)", re.IGNORECASE)
_PRIVATE_KEY = re.compile(rb"-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----|PuTTY-User-Key-File")
_HOST_KEY = re.compile(r"^ssh_host_[a-z0-9]+_key$")
GPU_ENV = ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")


def _text(s, path):
    return s.facts.files.get(path, b"").decode("utf-8", "replace")


def _user(s):
    """USER resolved against the image's own /etc/passwd and /etc/group, or the UnknownUser error."""
    try:
        return users.resolve(s.config.get("User") or "", _text(s, "/etc/passwd"), _text(s, "/etc/group"))
    except users.UnknownUser as e:
        return e


@rule("image.user-root", "high", "enforce", "image runs as root",
      "Add a non-root USER to the Dockerfile (e.g. USER 1000:100).",
      protects="`USER` unset, `root`, `0` or any spelling of uid 0 (`00`, `+0`, a passwd alias such as `toor`): "
               "root in a container is one kernel bug from root on the host")
def user_root(s):
    resolved, spec = s.once(_user), s.config.get("User") or ""
    if not isinstance(resolved, users.UnknownUser) and resolved.uid == 0:
        named = f"{spec!r} (uid 0)" if spec and spec.split(":")[0] not in ("root", "0") else (spec or "root (no USER set)")
        yield f"The image runs as {named}."


@rule("image.user-unknown", "high", "enforce", "image's USER is not an account in the image",
      "Set USER to a uid:gid, or to a user (and group) that /etc/passwd (and /etc/group) define.",
      protects="a `USER` name (or group) that the image's `/etc/passwd` (`/etc/group`) does not define: Docker "
               "would refuse to start it, and the hub cannot resolve it to the numeric `uid:gid` it creates "
               "containers with, so it cannot tell that it is not root")
def user_unknown(s):
    resolved, spec = s.once(_user), s.config.get("User") or ""
    if isinstance(resolved, users.UnknownUser):
        yield f"The image's USER {spec!r} cannot be resolved: {resolved}."


@rule("image.gpu-env", "low", "audit", "image selects GPUs in its environment",
      "Remove NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES / DOCKER_RESOURCE_* from the image's ENV: "
      "GPUs are leased per server by the hub.",
      why_audit="This warns by default: the hub sets NVIDIA_VISIBLE_DEVICES in every container it starts "
                "(the leased GPUs, or none), so the image's value never reaches the NVIDIA runtime.",
      protects="GPU selection baked into the image's `ENV` (CUDA base images set `NVIDIA_VISIBLE_DEVICES=all`), "
               "which would give a server GPUs it did not lease")
def gpu_env(s):
    names = sorted({item.partition("=")[0] for item in s.config.get("Env") or []
                    if item.partition("=")[0] in GPU_ENV or item.startswith("DOCKER_RESOURCE_")})
    if names:
        yield f"The image's environment sets {', '.join(names)}."


def _keys(s):
    """``(private, authorized)``: key files in /etc/ssh and the homes' .ssh directories."""
    private, authorized = [], []
    for place in ["/etc/ssh"] + list(s.inputs.homes_ssh):
        for path, entry in sorted(s.facts.under(place).items()):
            if entry.type != "file":
                continue
            name = posixpath.basename(path)
            data = s.facts.files.get(path, b"")
            if _PRIVATE_KEY.search(data) or (place == "/etc/ssh" and _HOST_KEY.match(name)):
                private.append(path)
            elif name.startswith("authorized_keys") or path.startswith("/etc/ssh/authorized_keys/"):
                if re.search(rb"(ssh|ecdsa|sk)-[a-z0-9@.-]+ +AAAA", data):
                    authorized.append(path)
    return private, authorized


@rule("image.baked-private-key", "critical", "enforce", "private key baked into the image",
      "Remove the key from the image (and rotate it): keys are delivered per spawn, never built in.",
      protects="private keys in `/etc/ssh` (including `ssh_host_*_key` host keys, which every container would "
               "share), `/root/.ssh` and every home's `.ssh`: anyone who pulls the image has them")
def baked_private_key(s):
    private, _ = s.once(_keys)
    if private:
        yield f"The image contains private keys: {listing(private)}."


@rule("image.baked-authorized-keys", "high", "enforce", "authorized_keys baked into the image",
      "Remove authorized_keys from the image: the hub delivers each user's keys at spawn.",
      protects="`authorized_keys` in the image: whoever holds that key logs in to every user's container")
def baked_authorized_keys(s):
    _, authorized = s.once(_keys)
    if authorized:
        yield f"The image contains authorized_keys: {listing(authorized)}."


@rule("image.env-secret", "critical", "enforce", "secret in the image's environment",
      "Remove the variable from the image's ENV (and rotate the secret); pass secrets at runtime.",
      protects="`ENV` names containing `TOKEN`, `PASSWORD`, `PASSWD`, `SECRET`, `CREDENTIAL`, `APIKEY`, `PRIVATE` "
               "or ending in `_KEY`, with a value, unless listed in `admission_env_secret_allowlist`: "
               "`docker inspect` and every process see it")
def env_secret(s):
    names = []
    for item in s.config.get("Env") or []:
        name, _, value = item.partition("=")
        if value and _SECRET_NAME.search(name) and name not in s.policy.env_secret_allowlist:
            names.append(name)  # never the value: decisions are logged
    if names:
        yield f"The image's environment sets {', '.join(sorted(names))} (looks like a secret; the value is not shown)."


def _sshd(s):
    return sshd.evaluate(s.policy.sshd_config, s.facts.files)


@rule("sshd.root-login", "high", "enforce", "sshd allows root login",
      "Set 'PermitRootLogin no' in the image's sshd_config.",
      protects="`PermitRootLogin` other than `no` (OpenSSH's default is `prohibit-password`) in "
               "`admission_sshd_config`")
def sshd_root_login(s):
    root, _ = s.once(_sshd)
    if root:
        yield f"{s.policy.sshd_config}: {listing(root)}."


@rule("sshd.password-auth", "high", "enforce", "sshd allows password logins",
      "Set 'PasswordAuthentication no' and 'KbdInteractiveAuthentication no' (or "
      "'AuthenticationMethods publickey') in the image's sshd_config.",
      protects="`PasswordAuthentication yes` (the default), or `KbdInteractiveAuthentication yes` with "
               "`UsePAM yes`, unless `AuthenticationMethods` excludes passwords")
def sshd_password_auth(s):
    _, password = s.once(_sshd)
    if password:
        yield f"{s.policy.sshd_config}: {listing(password)}."


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


def _sudo(s):
    """``(dangerous, nopasswd)``: the sudo grants that reach a user other than root, described."""
    facts, files = s.facts, {}
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
    return dangerous, nopasswd


@rule("sudo.nopasswd", "high", "enforce", "sudoers grants commands without a password",
      "Remove NOPASSWD rules from /etc/sudoers and /etc/sudoers.d (better: remove sudo).",
      protects="`NOPASSWD:` grants (or `Defaults !authenticate`) to a non-root user")
def sudo_nopasswd(s):
    _, nopasswd = s.once(_sudo)
    if nopasswd:
        yield f"sudo runs commands without a password: {listing(nopasswd)}."


@rule("sudo.interpreter-grant", "critical", "enforce", "sudoers grants a shell, interpreter or package manager",
      "Remove the sudo rule: running an interpreter or package manager through sudo is root. "
      "Change environments through the image (environment.yml) or user-owned envs in the home.",
      protects="grants of `ALL`, a wildcard, a shell, an interpreter (`python*`, `perl`, `node`, ...), a package "
               "manager (`conda`, `pip`, `apt-get`, ...) or an editor/pager with a shell escape: each is root")
def sudo_interpreter_grant(s):
    dangerous, _ = s.once(_sudo)
    if dangerous:
        yield f"sudo grants root: {listing(dangerous)}."


@rule("image.setuid-binary", "medium", "audit", "setuid/setgid binary outside the allowlist",
      "Remove the setuid/setgid bits in the Dockerfile (find / -xdev -perm /6000 -exec chmod a-s {} +).",
      why_audit="This warns by default: every container the hub starts runs with no-new-privileges, "
                "which makes setuid/setgid bits inert (su, passwd, mount and sudo cannot gain privileges); "
                "set the rule to enforce if these images also run elsewhere.",
      protects="setuid/setgid files (hard links included) in `admission_setuid_paths` (searched recursively) not in "
               "`admission_setuid_allowlist`, such as Debian's `su`, `passwd`, `mount` and `chsh`")
def setuid_binary(s):
    found = []
    for root in s.policy.setuid_paths:
        for path, entry in sorted(s.facts.under(root).items()):
            if (entry.type in ("file", "hardlink") and entry.mode & 0o6000
                    and not any(fnmatch.fnmatchcase(path, p) for p in s.policy.setuid_allowlist)):
                bits = "setuid" if entry.mode & 0o4000 else "setgid"
                found.append(f"{path} ({bits}, mode {entry.mode:o})")
    if found:
        yield f"The image has setuid/setgid binaries: {listing(sorted(set(found)))}."


def created(image_info):
    """The day the image was built (its ``Created``), or None."""
    match = re.match(r"^(\d{4}-\d{2}-\d{2})T", image_info.get("Created") or "")
    return datetime.date.fromisoformat(match[1]) if match else None


@rule("image.too-old", "medium", "enforce", "image is older than the allowed age",
      "Rebuild the image so it picks up current security updates.",
      protects="images that have missed months of security updates",
      when="`admission_max_image_age_days` > 0")
def too_old(s):
    day, max_days = created(s.image_info), s.policy.max_image_age_days
    if max_days and day and (s.today - day).days > max_days:
        yield (f"The image was built on {day.isoformat()}, {(s.today - day).days} days ago "
               f"(the limit is {max_days} days).")


@rule("image.no-healthcheck", "low", "audit", "image has no HEALTHCHECK",
      "Add a HEALTHCHECK to the Dockerfile.",
      protects="the hub cannot tell a hung server from a busy one")
def no_healthcheck(s):
    test = (s.config.get("Healthcheck") or {}).get("Test") or []
    if not test or test[0] == "NONE":
        yield "The image has no HEALTHCHECK."


BASE_LABEL = "org.opencontainers.image.base.name"  # OCI annotation docker/Dockerfile sets from BASE_IMAGE


@rule("image.base-not-pinned", "low", "audit", "image says it was built on a base image referenced by tag",
      "Build with the base pinned by digest (docker build --build-arg BASE_IMAGE=name:tag@sha256:<digest>; "
      "skopeo inspect --format '{{.Digest}}' docker://name:tag prints it), so a rebuild uses the same base.",
      why_audit="This warns by default: the hub checks the image's own content, whatever it was built on; "
                "an unpinned base only makes the next rebuild unpredictable.",
      protects=f"the image's label `{BASE_LABEL}` (which `docker/Dockerfile` sets from `BASE_IMAGE`) names a base "
               "by tag: the next rebuild may start from different content. It is the image's claim about itself, "
               "so it only warns; an image without the label gets no finding")
def base_not_pinned(s):
    base = ((s.config.get("Labels") or {}).get(BASE_LABEL) or "").strip()
    if base and "@sha256:" not in base:
        yield (f"The image says it was built on {base} ({BASE_LABEL}), a tag that can point at different "
               "content at the next rebuild.")
