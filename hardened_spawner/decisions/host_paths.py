"""Which host paths a notebook container may mount. Pure.

A bind mount of a host path is refused when the path is sensitive (the host's
system directories, the container runtime's state and sockets, and at spawn
the daemon's own socket and data root as ``docker info`` reports them), lies
under one, or **contains** one: mounting ``/var`` hands out
``/var/run/docker.sock`` as surely as mounting the socket. Read-only makes
no difference (a read-only Docker socket is still root on the host).
"""

import posixpath

# Host paths that no notebook container may mount, whatever the config says:
# the host root, its system directories, and the container runtime's state.
FORBIDDEN_HOST_PATHS = (
    "/", "/etc", "/proc", "/sys", "/dev", "/boot", "/usr", "/lib", "/lib32", "/lib64",
    "/bin", "/sbin", "/root", "/var/run", "/run", "/var/lib/docker", "/var/lib/containerd",
)
# Sockets that hand out control of the host, wherever they live.
FORBIDDEN_SOCKET_NAMES = ("docker.sock", "containerd.sock", "podman.sock", "crio.sock", "dockershim.sock")

_BIND_PROPAGATION = ("", "private", "rprivate")


# Host directories that hold many users' or programs' files: each may not be mounted as a
# whole (nor may a parent of it), while a directory inside it may (``/home/{username}``).
SHARED_ROOTS = ("/home", "/tmp", "/var/tmp")


def normalise_host_path(path):
    """Collapse ``//``, ``.`` and ``..`` so ``/etc/../etc/`` is caught as ``/etc``."""
    return posixpath.normpath("/" + path.lstrip("/")) if path.startswith("/") else path


def _within(path, top):
    """True when ``path`` is ``top`` or under it (both normalised)."""
    return path == top or path.startswith(top.rstrip("/") + "/")


def host_path_problem(path, extra_forbidden=()):
    """Why mounting host ``path`` is refused, or None if it is allowed.

    Refused: a forbidden path (the built-in list and ``extra_forbidden``, which
    holds the daemon's own socket and data root at spawn), anything under one,
    and any **parent** of one: ``/var`` holds ``/var/run/docker.sock`` and
    ``/var/lib/docker``. A shared root (:data:`SHARED_ROOTS`) and its parents
    are refused too; a directory inside it is not.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        return None  # a named volume, not a host path
    norm = normalise_host_path(path)
    if posixpath.basename(norm) in FORBIDDEN_SOCKET_NAMES:
        return f"{path} is a container runtime socket: it gives root on the host"
    if norm == "/":
        return f"{path} is the host's root filesystem, a sensitive host path"
    for forbidden in (*FORBIDDEN_HOST_PATHS, *extra_forbidden):
        forbidden = normalise_host_path(forbidden)
        if forbidden == "/":
            continue  # only the root itself (above): everything is under it
        if _within(norm, forbidden):
            return f"{path} is under {forbidden}, a sensitive host path"
        if _within(forbidden, norm):
            return f"{path} contains {forbidden}, a sensitive host path"
    for root in SHARED_ROOTS:
        if _within(root, norm):
            return (f"{path} is or contains {root}, which holds every user's files; mount a directory "
                    f"inside it instead (e.g. {root}/{{username}})")
    return None


def _bind_sources(binds):
    """``(host side, propagation)`` of docker-py ``binds`` (dict, or list of "src:dst[:options]")."""
    if isinstance(binds, dict):
        return [(src, (v.get("propagation") or "") if isinstance(v, dict) else "") for src, v in binds.items()]
    out = []
    for b in binds or ():
        if isinstance(b, str):
            parts = b.split(":")
            options = parts[2].split(",") if len(parts) > 2 else []
            out.append((parts[0], next((o for o in options if "shared" in o or "slave" in o), "")))
    return out


def _get(m, *keys):
    for key in keys:
        if key in m:
            return m[key]
    return None


def _mount_sources(mounts):
    """``(host path, propagation)`` of ``mounts``: bind mounts, and local volumes that bind a host path."""
    out = []
    for m in mounts or ():
        if not isinstance(m, dict):
            continue
        kind = _get(m, "type", "Type") or "volume"
        if kind == "bind":
            options = _get(m, "bind_options", "BindOptions") or {}
            propagation = _get(m, "propagation", "Propagation") or _get(options, "propagation", "Propagation") or ""
            out.append((_get(m, "source", "Source") or "", propagation))
        elif kind == "volume":
            options = _get(m, "volume_options", "VolumeOptions") or {}
            driver = _get(m, "driver_config", "DriverConfig") or _get(options, "driver_config", "DriverConfig") or {}
            opts = _get(driver, "options", "Options") or _get(m, "driver_opts") or {}
            if isinstance(opts, dict) and "bind" in str(opts.get("o", "")).split(","):
                out.append((str(opts.get("device", "")), ""))
    return out


def check_mounts(setting, volumes=None, binds=None, mounts=None, extra_forbidden=()):
    """Problems with host paths in DockerSpawner ``volumes``, ``binds`` or ``mounts``.

    Read-only makes no difference (a read-only Docker socket is still root on the
    host); mount propagation other than private is refused; a local volume with
    ``o=bind,device=<path>`` is a bind mount of that path and is checked as one.
    """
    problems = []
    sources = [(v, "") for v in volumes or {}] + _bind_sources(binds) + _mount_sources(mounts)
    for source, propagation in sources:
        reason = host_path_problem(source, extra_forbidden)
        if reason:
            problems.append((setting, f"refusing to mount {reason}"))
        if propagation not in _BIND_PROPAGATION:
            problems.append((setting, f"mount propagation {propagation!r} for {source} lets mounts cross between "
                             "the host and the container; only private propagation is allowed"))
    return problems
