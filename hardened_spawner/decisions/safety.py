"""Refuse admin configuration that would weaken the hardened defaults.

Pure functions: each takes plain config values and returns a list of
``(setting, message)`` problems. An empty list means the setting is safe.
These run when the configuration is loaded (``enforce_config``, the
``validate-config`` command) and again at every spawn, where callables have
been evaluated to their real values.
"""

from .host_paths import check_mounts

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


def check_capabilities(setting, capabilities):
    problems = []
    for cap in capabilities or ():
        name = str(cap).upper().removeprefix("CAP_")
        if name in ROOT_EQUIVALENT_CAPABILITIES:
            problems.append((setting, f"capability {name} is root-equivalent and cannot be added back"))
        elif name not in KNOWN_CAPABILITIES:
            problems.append((setting, f"unknown capability {cap!r}"))
    return problems


def security_opt_problem(opt):
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


def group_problem(group, forbidden_gids=()):
    """Why supplementary group ``group`` is refused, or None. ``forbidden_gids``: the groups that
    own the daemon's socket (membership is root on the host)."""
    value = str(group).strip()
    if not value.isdigit():
        return f"group {group!r} must be a number: a name is resolved in the image and may be root's"
    if int(value) == 0:
        return "group 0 is root's group"
    if int(value) in forbidden_gids:
        return f"group {int(value)} owns the Docker daemon's socket: its members control the host"
    return None


# Environment variables that choose which GPUs a container gets (the NVIDIA runtime reads
# them): only the hub's lease may set them.
GPU_ENV = ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "NVIDIA_MIG_CONFIG_DEVICES", "NVIDIA_MIG_MONITOR_DEVICES")
GPU_ENV_PREFIX = "DOCKER_RESOURCE_"  # Swarm's generic resources, e.g. DOCKER_RESOURCE_NVIDIA-GPU


def env_dict(environment):
    """docker-py ``environment`` (a dict, or a list of ``K=V``) as a dict; later entries win, as in Docker."""
    if isinstance(environment, dict):
        return {str(k): v for k, v in environment.items()}
    out = {}
    for item in environment or ():
        name, _, value = str(item).partition("=")
        out[name] = value
    return out


def is_gpu_env(name):
    return name in GPU_ENV or name.startswith(GPU_ENV_PREFIX)


def check_environment(setting, environment):
    """Problems with environment an admin sets: variables that pick GPUs belong to the lease."""
    picked = sorted(n for n in env_dict(environment) if is_gpu_env(n))
    if not picked:
        return []
    return [(setting, f"{', '.join(picked)} choose(s) which GPUs a container gets; GPUs are leased per server "
             "by the hub (profiles' gpus), which sets these itself: remove them")]


def check_host_config(setting, host_config, extra_forbidden=(), forbidden_gids=(), network=None):
    """Problems with an admin's ``extra_host_config`` (docker-py keyword form).

    Only the keys in :data:`ALLOWED_HOST_KEYS` pass, each with its value checked.
    ``network``: the isolated network servers run on (None: isolation is off),
    which ``network_mode`` may not replace.
    """
    problems = []
    host_config = host_config or {}
    mode = host_config.get("network_mode")
    if network is not None and mode is not None and mode != network:
        problems.append((f"{setting}['network_mode']", f"network_mode={mode!r} would put servers outside the "
                         f"isolated network {network!r}, where they can reach each other; set network_name "
                         "instead (or isolate_containers = False)"))
    for key, why in _REFUSED_HOST_KEYS.items():
        if key in host_config and not (key == "privileged" and host_config[key] is False):
            problems.append((f"{setting}[{key!r}]", why))
    for key in host_config:
        if key not in _REFUSED_HOST_KEYS and key not in ALLOWED_HOST_KEYS:
            problems.append((f"{setting}[{key!r}]", "is not a setting this hub passes to Docker; allowed keys: "
                             + ", ".join(ALLOWED_HOST_KEYS)))
    for group in host_config.get("group_add") or ():
        reason = group_problem(group, forbidden_gids)
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
        reason = security_opt_problem(opt)
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
    problems += check_environment(f"{setting}['environment']", create_kwargs.get("environment"))
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
