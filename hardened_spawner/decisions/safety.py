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
}
_HOST_NAMESPACE_KEYS = ("network_mode", "pid_mode", "ipc_mode", "uts_mode", "userns_mode", "cgroupns")
_REFUSED_SECURITY_OPTS = {
    "seccomp=unconfined": "disables the seccomp filter",
    "apparmor=unconfined": "disables AppArmor confinement",
    "label=disable": "disables SELinux labelling",
    "no-new-privileges=false": "lets setuid binaries gain privileges",
    "systempaths=unconfined": "exposes /proc and /sys paths Docker masks",
}


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
    """Host sides of docker-py ``binds`` (list of "src:dst[:mode]" or dict)."""
    if isinstance(binds, dict):
        return list(binds)
    return [b.split(":", 1)[0] for b in binds or () if isinstance(b, str)]


def _mount_sources(mounts):
    sources = []
    for m in mounts or ():
        if isinstance(m, dict):
            kind = m.get("type", m.get("Type", "volume"))
            if kind == "bind":
                sources.append(m.get("source", m.get("Source", "")))
    return sources


def check_mounts(setting, volumes=None, binds=None, mounts=None, extra_forbidden=()):
    """Problems with host paths in DockerSpawner ``volumes``, ``binds`` or ``mounts``."""
    problems = []
    sources = list(volumes or {}) + _bind_sources(binds) + _mount_sources(mounts)
    for source in sources:
        reason = host_path_problem(source, extra_forbidden)
        if reason:
            problems.append((setting, f"refusing to mount {reason}"))
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
    return None


def check_host_config(setting, host_config, extra_forbidden=()):
    """Problems with an admin's ``extra_host_config`` (docker-py keyword form)."""
    problems = []
    host_config = host_config or {}
    for key, why in _REFUSED_HOST_KEYS.items():
        if key in host_config and not (key == "privileged" and host_config[key] is False):
            problems.append((f"{setting}[{key!r}]", why))
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
    """True for a Docker user spec (``name``, ``uid``, ``uid:gid``, or empty) that means root."""
    name = str(user).split(":", 1)[0].strip()
    return name in ("", "0", "root")


def check_create_kwargs(setting, create_kwargs):
    problems = []
    create_kwargs = create_kwargs or {}
    if "host_config" in create_kwargs:
        problems.append((f"{setting}['host_config']", "bypasses every host check; use extra_host_config"))
    if "user" in create_kwargs and is_root_user(create_kwargs["user"]):
        problems.append((f"{setting}['user']", f"user {create_kwargs['user']!r} is root; containers never run as uid 0"))
    return problems


def check_network(setting, network_name):
    if network_name == "host" or str(network_name).startswith("container:"):
        return [(setting, f"network {network_name!r} shares a network namespace outside the container")]
    return []


def check_uid(setting, uid):
    if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0:
        return [(setting, f"{uid!r} is not a non-root uid; containers never run as uid 0")]
    return []
