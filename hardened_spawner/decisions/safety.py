"""Refuse admin configuration that would weaken the hardened defaults.

Pure functions: each takes plain config values and returns a list of
``(setting, message)`` problems. An empty list means the setting is safe.
These run when the configuration is loaded (``enforce_config``, the
``validate-config`` command) and again at every spawn, where callables have
been evaluated to their real values.
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

# Capabilities that amount to root on the host or defeat isolation; they
# cannot be added back. Anything else may be, by name.
ROOT_EQUIVALENT_CAPABILITIES = frozenset({
    "ALL", "SYS_ADMIN", "SYS_MODULE", "SYS_RAWIO", "SYS_PTRACE", "SYS_BOOT", "SYS_TIME",
    "DAC_READ_SEARCH", "NET_ADMIN", "MAC_ADMIN", "MAC_OVERRIDE", "BPF", "PERFMON",
    "SYSLOG", "LINUX_IMMUTABLE", "AUDIT_CONTROL", "SETFCAP", "SYS_RESOURCE",
})
KNOWN_CAPABILITIES = ROOT_EQUIVALENT_CAPABILITIES - {"ALL"} | {
    "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "CHECKPOINT_RESTORE", "CHOWN",
    "DAC_OVERRIDE", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
    "MKNOD", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "SETGID", "SETPCAP",
    "SETUID", "SYS_CHROOT", "SYS_NICE", "SYS_PACCT", "SYS_TTY_CONFIG", "WAKE_ALARM",
}

# Keys of extra_host_config that are refused outright, with what to do instead.
_REFUSED_HOST_KEYS = {
    "privileged": "privileged containers are never allowed",
    "devices": "host devices are not passed through; GPUs come from profiles",
    "device_cgroup_rules": "device cgroup rules would open host devices",
    "device_requests": "GPUs are requested through profiles, which allocate them exclusively",
    "volumes_from": "sharing another container's volumes bypasses the mount checks",
    "oom_kill_disable": "disabling the OOM killer lets one user exhaust host memory",
    "mem_limit": "set HardenedDockerSpawner.mem_limit or a profile instead",
    "memswap_limit": "swap is tied to the memory limit; set mem_limit or a profile instead",
    "nano_cpus": "set HardenedDockerSpawner.cpu_limit or a profile instead",
    "cpu_quota": "set HardenedDockerSpawner.cpu_limit or a profile instead",
    "cpu_period": "set HardenedDockerSpawner.cpu_limit or a profile instead",
    "pids_limit": "set HardenedDockerSpawner.pids_limit or a profile instead",
    "shm_size": "set HardenedDockerSpawner.shm_size or a profile instead",
    "read_only": "set HardenedDockerSpawner.read_only_root instead",
    "cap_add": "set HardenedDockerSpawner.cap_add instead",
    "cgroup_parent": "a cgroup outside Docker's escapes the limits this hub sets",
    "sysctls": "kernel parameters are not set per container here",
    "runtime": "another runtime (or nvidia as one) bypasses the GPU allocator and the default runtime's confinement",
    "oom_score_adj": "changing the OOM score shifts the OOM killer onto other users' servers",
    "ulimits": "limits come from profiles; ulimits can raise what the hub lowered",
    "publish_all_ports": "publishing every exposed port on the host bypasses the proxy",
    "storage_opt": "storage options are not set per container here",
    "isolation": "isolation technologies are not set per container here",
    "kernel_memory": "set HardenedDockerSpawner.mem_limit or a profile instead",
    "mem_reservation": "set mem_guarantee in a profile instead",
    "cpu_shares": "set cpu_guarantee in a profile instead",
    "cpu_rt_period": "real-time CPU scheduling is not given to notebooks",
    "cpu_rt_runtime": "real-time CPU scheduling is not given to notebooks",
    "volume_driver": "volume drivers can mount host paths the mount checks cannot see",
}
# Keys of extra_host_config that are passed to Docker; each value is checked below. Anything else refuses
# the hub's start: a key Docker adds tomorrow is not allowed until someone has looked at it.
ALLOWED_HOST_KEYS = (
    "binds", "mounts", "tmpfs", "links", "port_bindings", "network_mode", "ipc_mode", "pid_mode", "uts_mode",
    "userns_mode", "cgroupns", "security_opt", "privileged", "group_add", "dns", "dns_opt", "dns_search",
    "extra_hosts", "init", "log_config", "cpuset_cpus", "cpuset_mems", "blkio_weight", "cap_drop", "auto_remove",
)
# Keys of extra_create_kwargs passed to Docker (host_config, image, name and networking_config bypass checks).
ALLOWED_CREATE_KEYS = (
    "user", "labels", "working_dir", "hostname", "domainname", "stop_signal", "stop_timeout", "healthcheck",
    "entrypoint", "command", "environment", "volumes", "ports", "tty", "stdin_open", "detach", "mac_address",
)
_REFUSED_CREATE_KEYS = {
    "host_config": "bypasses every host check; use extra_host_config",
    "image": "the image comes from the image settings and is checked by admission before every spawn",
    "name": "the container name identifies the server (DockerSpawner.name_template)",
    "networking_config": "attaches the container to networks the hub did not choose",
}
LABEL_PREFIX = "hardened-spawner."
_BIND_PROPAGATION = ("", "private", "rprivate")
_HOST_NAMESPACE_KEYS = ("network_mode", "pid_mode", "ipc_mode", "uts_mode", "userns_mode", "cgroupns")
_REFUSED_SECURITY_OPTS = {
    "seccomp=unconfined": "disables the seccomp filter",
    "apparmor=unconfined": "disables AppArmor confinement",
    "label=disable": "disables SELinux labelling",
    "no-new-privileges=false": "lets setuid binaries gain privileges",
    "systempaths=unconfined": "exposes /proc and /sys paths Docker masks",
}
# security_opt values that may be given: they only restate what the hub sets.
_ALLOWED_SECURITY_OPTS = ("no-new-privileges", "no-new-privileges=true", "apparmor=docker-default")


def normalise_host_path(path):
    """Collapse ``//``, ``.`` and ``..`` so ``/etc/../etc/`` is caught as ``/etc``."""
    return posixpath.normpath("/" + path.lstrip("/")) if path.startswith("/") else path


def host_path_problem(path, extra_forbidden=()):
    """Why mounting host ``path`` is refused, or None if it is allowed."""
    if not isinstance(path, str) or not path.startswith("/"):
        return None  # a named volume, not a host path
    norm = normalise_host_path(path)
    if posixpath.basename(norm) in FORBIDDEN_SOCKET_NAMES:
        return f"{path} is a container runtime socket: it gives root on the host"
    for forbidden in (*FORBIDDEN_HOST_PATHS, *extra_forbidden):
        forbidden = normalise_host_path(forbidden)
        if norm == forbidden or (forbidden != "/" and norm.startswith(forbidden + "/")):
            what = "the host's root filesystem" if forbidden == "/" else f"under {forbidden}"
            return f"{path} is {what}, a sensitive host path"
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


def check_capabilities(setting, capabilities):
    problems = []
    for cap in capabilities or ():
        name = str(cap).upper().removeprefix("CAP_")
        if name in ROOT_EQUIVALENT_CAPABILITIES:
            problems.append((setting, f"capability {name} is root-equivalent and cannot be added back"))
        elif name not in KNOWN_CAPABILITIES:
            problems.append((setting, f"unknown capability {cap!r}"))
    return problems


def _security_opt_problem(opt):
    key = str(opt).replace(":", "=", 1).lower()
    if key in _REFUSED_SECURITY_OPTS:
        return f"{opt!r} {_REFUSED_SECURITY_OPTS[key]}"
    if key.startswith("seccomp="):
        return f"{opt!r} replaces Docker's default seccomp profile"
    if key in _ALLOWED_SECURITY_OPTS:
        return None
    if key.startswith("apparmor="):
        return f"{opt!r} replaces Docker's default AppArmor profile (docker-default)"
    if key.startswith("label="):
        return f"{opt!r} changes the container's SELinux labels"
    return f"{opt!r} is not a security option this hub passes on (allowed: {', '.join(_ALLOWED_SECURITY_OPTS)})"


def _group_problem(group):
    value = str(group).strip()
    if not value.isdigit():
        return f"group {group!r} must be a number: a name is resolved in the image and may be root's"
    if int(value) == 0:
        return "group 0 is root's group"
    return None


def check_host_config(setting, host_config, extra_forbidden=()):
    """Problems with an admin's ``extra_host_config`` (docker-py keyword form).

    Only the keys in :data:`ALLOWED_HOST_KEYS` pass, each with its value checked.
    """
    problems = []
    host_config = host_config or {}
    for key, why in _REFUSED_HOST_KEYS.items():
        if key in host_config and not (key == "privileged" and host_config[key] is False):
            problems.append((f"{setting}[{key!r}]", why))
    for key in host_config:
        if key not in _REFUSED_HOST_KEYS and key not in ALLOWED_HOST_KEYS:
            problems.append((f"{setting}[{key!r}]", "is not a setting this hub passes to Docker; allowed keys: "
                             + ", ".join(ALLOWED_HOST_KEYS)))
    for group in host_config.get("group_add") or ():
        reason = _group_problem(group)
        if reason:
            problems.append((f"{setting}['group_add']", reason))
    ports = host_config.get("port_bindings") or {}
    if isinstance(ports, dict) and any(
            not isinstance(v, (tuple, list)) or not v or v[0] in ("", "0.0.0.0", "::") for v in ports.values()):
        problems.append((f"{setting}['port_bindings']", "ports may be published on 127.0.0.1 only "
                         "(e.g. {8888: ('127.0.0.1',)}): the proxy is the way in"))
    for key in _HOST_NAMESPACE_KEYS:
        value = host_config.get(key)
        if isinstance(value, str) and (value == "host" or value.startswith("container:")):
            problems.append((f"{setting}[{key!r}]", f"{key}={value!r} shares a namespace outside the container"))
    for opt in host_config.get("security_opt") or ():
        reason = _security_opt_problem(opt)
        if reason:
            problems.append((f"{setting}['security_opt']", reason))
    problems += check_mounts(f"{setting}['binds']", binds=host_config.get("binds"), extra_forbidden=extra_forbidden)
    problems += check_mounts(f"{setting}['mounts']", mounts=host_config.get("mounts"), extra_forbidden=extra_forbidden)
    return problems


def is_root_user(user):
    """True for a Docker user spec that means root whatever the image: empty, ``root``, ``0``, ``00``, ``+0``...

    Names other than ``root`` can only be judged against an image's /etc/passwd
    (:func:`.users.resolve`); the spawner does that at every spawn.
    """
    name = str(user).split(":", 1)[0].strip()
    return name in ("", "root") or (name.lstrip("+").isdigit() and int(name.lstrip("+")) == 0)


def check_create_kwargs(setting, create_kwargs):
    """Problems with an admin's ``extra_create_kwargs``: only :data:`ALLOWED_CREATE_KEYS` pass."""
    problems = []
    create_kwargs = create_kwargs or {}
    for key in create_kwargs:
        if key in _REFUSED_CREATE_KEYS:
            problems.append((f"{setting}[{key!r}]", _REFUSED_CREATE_KEYS[key]))
        elif key not in ALLOWED_CREATE_KEYS:
            problems.append((f"{setting}[{key!r}]", "is not a setting this hub passes to Docker; allowed keys: "
                             + ", ".join(ALLOWED_CREATE_KEYS)))
    if "user" in create_kwargs and is_root_user(create_kwargs["user"]):
        problems.append((f"{setting}['user']", f"user {create_kwargs['user']!r} is root; containers never run as uid 0"))
    labels = create_kwargs.get("labels") or {}
    forged = sorted(k for k in (labels if isinstance(labels, (dict, list, tuple)) else ()) if str(k).startswith(LABEL_PREFIX))
    if forged:
        problems.append((f"{setting}['labels']", f"labels {', '.join(forged)} are the hub's own (GPU recovery and "
                         "ownership trust them) and cannot be set here"))
    return problems


def check_network(setting, network_name):
    if network_name == "host" or str(network_name).startswith("container:"):
        return [(setting, f"network {network_name!r} shares a network namespace outside the container")]
    return []


def check_uid(setting, uid):
    if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0:
        return [(setting, f"{uid!r} is not a non-root uid; containers never run as uid 0")]
    return []


ICC_OPTION = "com.docker.network.bridge.enable_icc"


def network_isolation_problem(network):
    """Why containers on Docker network ``network`` (inspect output) can reach each other, or None.

    A bridge network with inter-container communication off lets each container
    talk to the host (the hub, the proxy, the gateway) and the outside, never to
    another container on it: Bob's server cannot reach Alice's notebook or sshd.
    """
    name = network.get("Name", "?")
    if network.get("Driver") != "bridge":
        return f"network {name!r} uses the {network.get('Driver')!r} driver; only a bridge network can keep containers apart"
    if str((network.get("Options") or {}).get(ICC_OPTION, "true")).lower() != "false":
        return (f"network {name!r} lets containers reach each other ({ICC_OPTION} is not false), so users could reach "
                "each other's servers and sshd without the proxy or the SSH gateway")
    return None
