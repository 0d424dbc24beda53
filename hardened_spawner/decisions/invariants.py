"""What every notebook container must be, checked on what is really sent and really created. Pure.

The settings checks (:mod:`.safety`) name the admin setting that is wrong;
these invariants are the backstop behind them. They are checked on the
**final** create request, after every merge of admin extras, whatever
produced it, and again on what Docker **recorded** for the container
(``docker inspect``), so a merge order, a docker-py conversion or a daemon
that ignores a field cannot quietly undo a protection. Both forms are read as
Docker's API has them (``Config``/``HostConfig``); :func:`of_request`
converts docker-py keyword arguments with docker-py's own builders.

Each :class:`Violation` names its invariant (``container.<what>``).
"""

from dataclasses import dataclass

import docker.types

from ..units import parse_bytes
from .host_paths import _BIND_PROPAGATION, host_path_problem
from .limits import log_bound_problems
from .readonly import PIP_CONFIG_FILE, POLICY_DIR
from .safety import env_dict, group_problem, is_gpu_env, security_opt_problem

NAMESPACE_MODES = ("PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode", "NetworkMode")
_OPEN_IPS = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class Daemon:
    """Facts about the Docker daemon the hub talks to (``docker info`` and the client address)."""

    root_dir: str = "/var/lib/docker"   # DockerRootDir
    socket: str = ""                    # the unix socket the hub uses ("" over TCP)
    socket_gid: int | None = None       # the group that owns it, when the hub can see it
    default_runtime: str = ""           # DefaultRuntime ("" unknown)
    storage_driver: str = ""            # Driver ("" unknown)
    backing_fs: str = ""                # DriverStatus "Backing Filesystem" (overlay2; "" unknown)
    api_version: str = docker.constants.DEFAULT_DOCKER_API_VERSION

    def forbidden_paths(self):
        return tuple(p for p in (self.root_dir, self.socket) if p)

    def forbidden_gids(self):
        return () if self.socket_gid in (None, 0) else (self.socket_gid,)


@dataclass(frozen=True)
class Expected:
    """What the plan says the container must be."""

    image: str                 # what it is created from: the admitted Id (or name@digest)
    user: str                  # numeric "uid:gid", never 0
    limits: object             # limits.Limits, GPU ids included
    cap_add: tuple = ()
    network: str | None = None  # the isolated network (None: isolation is off)
    gpu_env: tuple = ()        # ((name, value), ...) the hub sets for the lease
    gpu_driver: str = "nvidia"  # the DeviceRequests driver of a lease ("cdi" for CDI names)
    gpu_devices: tuple = ()    # the device ids asked of that driver
    read_only_root: bool = False
    forbidden_paths: tuple = ()  # extra host paths (the daemon's socket and data root, the admin's list)
    forbidden_gids: tuple = ()
    runtime: str = ""          # the daemon's default runtime, which a container must keep ("" unknown)
    policy_volume: str = ""    # read-only root with guard files: the volume mounted read-only at /etc/conda
    pip_config: bool = False   # ... holding pip.conf, which PIP_CONFIG_FILE names


@dataclass(frozen=True)
class Violation:
    invariant: str
    message: str

    def as_problem(self):
        return (self.invariant, self.message)


def of_request(create_kwargs, expected, api_version=docker.constants.DEFAULT_DOCKER_API_VERSION):
    """Violations of the docker-py ``create_container`` arguments ``create_kwargs``
    (``host_config`` as ``create_host_config`` keyword arguments)."""
    kwargs = {k: v for k, v in create_kwargs.items() if k not in ("name", "host_config", "networking_config")}
    host = dict(docker.types.HostConfig(api_version, **create_kwargs["host_config"]))
    config = dict(docker.types.ContainerConfig(api_version, host_config=host, **kwargs))
    out = check(config["Image"], config, host, expected, request=True)
    if create_kwargs.get("networking_config"):
        out.append(Violation("container.network", "the request attaches networks the hub did not choose "
                                                  "(networking_config)"))
    return out


def of_container(inspect, expected):
    """Violations of a created container, as ``docker inspect`` shows it."""
    config, host = inspect.get("Config") or {}, inspect.get("HostConfig") or {}
    out = check(inspect.get("Image") or "", config, host, expected, request=False)
    attached = set(((inspect.get("NetworkSettings") or {}).get("Networks") or {}))
    if expected.network is not None and attached - {expected.network}:
        out.append(Violation("container.network", f"it is attached to {', '.join(sorted(attached))}, not only "
                                                   f"the isolated network {expected.network!r}"))
    for m in inspect.get("Mounts") or ():
        if expected.policy_volume and m.get("Destination") == POLICY_DIR and (
                m.get("Type") != "volume" or m.get("Name") != expected.policy_volume or m.get("RW")):
            out.append(Violation("container.conda-policy", f"Docker mounted {m.get('Name') or m.get('Source')!r} "
                                                           f"at {POLICY_DIR} {'read-write' if m.get('RW') else ''}, "
                                                           f"not the policy volume read-only"))
        if m.get("Type") == "bind":
            problem = host_path_problem(m.get("Source") or "", expected.forbidden_paths)
            if problem:
                out.append(Violation("container.mounts", f"Docker mounted {problem}"))
    return out


def check(image, config, host, expected, request):
    """Violations of a container described by its API ``config`` and ``host`` config; ``request``: the
    form is a create request (not yet what Docker recorded)."""
    out = []

    def bad(invariant, message):
        out.append(Violation(f"container.{invariant}", message))

    if image != expected.image:
        bad("image", f"it is made from {image or 'no image'}, not the admitted image {expected.image}")
    if host.get("Privileged"):
        bad("privileged", "it is privileged")
    _capabilities(host, expected, bad)
    _security_opts(host, bad)
    _user(config, host, expected, bad)
    _namespaces(host, expected, request, bad)
    _gpus(config, host, expected, request, bad)
    _mounts(host, expected, bad)
    _limits(host, expected.limits, bad)
    _logs(host, expected.limits, bad)
    _conda_policy(config, host, expected, bad)
    if expected.read_only_root and not host.get("ReadonlyRootfs"):
        bad("read-only-root", "its root filesystem is writable, though read_only_root is on")
    runtime = host.get("Runtime") or ""
    if request and runtime:
        bad("runtime", f"the request names runtime {runtime!r}; containers run on the daemon's default runtime")
    elif not request and expected.runtime and runtime != expected.runtime:
        bad("runtime", f"it runs on runtime {runtime!r}, not the daemon's default {expected.runtime!r}")
    for key, why in (("CgroupParent", "a cgroup parent outside Docker's"), ("OomKillDisable", "the OOM killer off"),
                     ("PublishAllPorts", "every exposed port published"), ("Devices", "host devices"),
                     ("DeviceCgroupRules", "device cgroup rules"), ("VolumesFrom", "another container's volumes"),
                     ("Sysctls", "kernel parameters")):
        if host.get(key):
            bad("host-access", f"it has {why} ({key})")
    for port, bindings in (host.get("PortBindings") or {}).items():
        for b in bindings or ():
            if (b.get("HostIp") if isinstance(b, dict) else "") in _OPEN_IPS:
                bad("ports", f"port {port} is published on every host address; the proxy is the way in")
    return out


def _cap(name):
    return str(name).upper().removeprefix("CAP_")


def _capabilities(host, expected, bad):
    if "ALL" not in {_cap(c) for c in host.get("CapDrop") or ()}:
        bad("capabilities", "it does not drop every capability (cap_drop ALL)")
    extra = sorted({_cap(c) for c in host.get("CapAdd") or ()} - {_cap(c) for c in expected.cap_add})
    if extra:
        bad("capabilities", f"it adds capabilities the hub did not allow: {', '.join(extra)}")


def _security_opts(host, bad):
    opts = [str(o) for o in host.get("SecurityOpt") or ()]
    if not any(o.replace("=", ":", 1) in ("no-new-privileges", "no-new-privileges:true") for o in opts):
        bad("no-new-privileges", "it runs without no-new-privileges")
    for opt in opts:
        problem = security_opt_problem(opt)
        if problem:
            bad("security-opt", problem)


def _user(config, host, expected, bad):
    user = str(config.get("User") or "")
    uid = user.split(":", 1)[0]
    if not uid.isdigit() or int(uid) == 0:
        bad("user", f"it runs as {user or 'the image default (root)'!r}, not a numeric non-root uid")
    elif user != expected.user:
        bad("user", f"it runs as {user!r}, not {expected.user!r}")
    for group in host.get("GroupAdd") or ():
        problem = group_problem(group, expected.forbidden_gids)
        if problem:
            bad("groups", problem)


def _namespaces(host, expected, request, bad):
    for key in NAMESPACE_MODES:
        value = str(host.get(key) or "")
        if value == "host" or value.startswith("container:"):
            bad("namespaces", f"{key}={value!r} shares a namespace outside the container")
    if request and host.get("CgroupnsMode") != "private":  # else the daemon's default decides (host on cgroup v1)
        bad("namespaces", "the request does not ask for a private cgroup namespace (CgroupnsMode)")
    mode = host.get("NetworkMode") or ""
    if expected.network is not None and mode != expected.network:
        bad("network", f"it is on network {mode or 'default'!r}, not the isolated network {expected.network!r}")


def _gpus(config, host, expected, request, bad):
    env = env_dict(config.get("Env"))
    wanted = dict(expected.gpu_env)
    # Docker puts the request's values over the image's ENV: what the hub set must be what ran; a
    # request may set no other GPU variable (the image's own are its claim, judged by admission)
    names = set(wanted) | ({n for n in env if is_gpu_env(n)} if request else set())
    for name in sorted(names):
        if env.get(name) != wanted.get(name):
            bad("gpus", f"{name}={env.get(name)!r}, but the lease says {wanted.get(name)!r}")
    requests = host.get("DeviceRequests") or []
    got = [(r.get("Driver"), tuple(r.get("DeviceIDs") or ()), r.get("Count") or 0) for r in requests]
    want = [(expected.gpu_driver, tuple(expected.gpu_devices), 0)] if expected.gpu_devices else []
    if got != want:
        bad("gpus", f"it asks for devices {got or 'none'}, but the lease is {want or 'none'}")


def _bind_sources(host):
    for b in host.get("Binds") or ():
        parts = str(b).split(":")
        options = parts[2].split(",") if len(parts) > 2 else []
        yield parts[0], next((o for o in options if "shared" in o or "slave" in o), "")
    for m in host.get("Mounts") or ():
        get = {str(k).lower(): v for k, v in m.items()}.get
        kind = (get("type") or "volume").lower()
        bind = {str(k).lower(): v for k, v in (get("bindoptions") or get("bind_options") or {}).items()}
        volume = {str(k).lower(): v for k, v in (get("volumeoptions") or get("volume_options") or {}).items()}
        driver = {str(k).lower(): v for k, v in (volume.get("driverconfig") or {}).items()}
        opts = driver.get("options") or {}
        if kind == "bind":
            yield get("source") or "", bind.get("propagation") or ""
        elif kind == "volume" and "bind" in str(opts.get("o", "")).split(","):
            yield str(opts.get("device", "")), ""


def _mounts(host, expected, bad):
    for source, propagation in _bind_sources(host):
        problem = host_path_problem(source, expected.forbidden_paths)
        if problem:
            bad("mounts", f"it mounts {problem}")
        if propagation not in _BIND_PROPAGATION:
            bad("mounts", f"{source} is mounted with {propagation!r} propagation")


def _limits(host, limits, bad):
    for key, want in (("Memory", limits.memory), ("MemorySwap", limits.memory), ("PidsLimit", limits.pids)):
        if host.get(key) != want:
            bad("limits", f"{key} is {host.get(key)!r}, not {want!r}")
    quota, period = host.get("CpuQuota") or 0, host.get("CpuPeriod") or 0
    nano = host.get("NanoCpus") or 0
    cpus = quota / period if quota > 0 and period > 0 else nano / 1e9
    if abs(cpus - limits.cpus) > 0.005:
        bad("limits", f"its CPU limit is {cpus:g}, not {limits.cpus:g}")
    if limits.disk:
        size = (host.get("StorageOpt") or {}).get("size")
        try:
            ok = parse_bytes(size) == limits.disk
        except ValueError:
            ok = False
        if not ok:
            bad("limits", f"its writable layer is bounded at {size!r} (StorageOpt size), not {limits.disk} bytes")


def _logs(host, limits, bad):
    """The log a container keeps on the daemon's disk is bounded, at most as the profile allows."""
    for message in log_bound_problems(host.get("LogConfig"), limits):
        bad("log-bound", message)


def _policy_targets(host):
    """``(source, read-only)`` of every bind and mount at /etc/conda."""
    for b in host.get("Binds") or ():
        parts = str(b).split(":")
        if len(parts) >= 2 and parts[1].rstrip("/") == POLICY_DIR:
            yield parts[0], len(parts) > 2 and "ro" in parts[2].split(",")
    for m in host.get("Mounts") or ():
        get = {str(k).lower(): v for k, v in m.items()}.get
        if str(get("target") or "").rstrip("/") == POLICY_DIR:
            yield get("source") or "", bool(get("readonly"))


def _conda_policy(config, host, expected, bad):
    """A read-only root's conda/pip policy: its volume read-only at /etc/conda, the only mount there,
    and PIP_CONFIG_FILE naming its pip.conf."""
    if not expected.policy_volume:
        return
    targets = list(_policy_targets(host))
    if targets != [(expected.policy_volume, True)]:
        bad("conda-policy", f"{POLICY_DIR} is mounted as {targets or 'nothing'}, not only the policy volume "
                            f"{expected.policy_volume!r} read-only")
    pip = env_dict(config.get("Env")).get("PIP_CONFIG_FILE")
    if expected.pip_config and pip != PIP_CONFIG_FILE:
        bad("conda-policy", f"PIP_CONFIG_FILE is {pip!r}, not the policy volume's {PIP_CONFIG_FILE}")
