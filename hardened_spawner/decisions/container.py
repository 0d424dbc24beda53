"""Build the keyword arguments of ``docker create`` for one notebook container.

Pure: takes what the spawner knows (DockerSpawner's settings, the limits and
the hardening policy) and returns the arguments for docker-py's
``create_container``, with ``host_config`` as the keyword arguments of
``create_host_config``. Hardened keys are applied last, so nothing an admin
merges in can undo them (the unsafe values are refused earlier, in
:mod:`hardened_spawner.safety`).
"""

import copy
import hashlib
import json
from dataclasses import dataclass, field

LABEL_PREFIX = "hardened-spawner."
LABEL_MANAGED = LABEL_PREFIX + "managed"
LABEL_OWNER = LABEL_PREFIX + "owner"
LABEL_SERVER = LABEL_PREFIX + "server"
LABEL_POLICY = LABEL_PREFIX + "policy-version"
LABEL_GPUS = LABEL_PREFIX + "gpus"
LABEL_MEMORY = LABEL_PREFIX + "memory-limit"
LABEL_PROFILE = LABEL_PREFIX + "profile"

NO_NEW_PRIVILEGES = "no-new-privileges:true"
CPU_PERIOD = 100_000  # microseconds


@dataclass(frozen=True)
class Hardening:
    """The security settings every container gets."""

    user: str = "1000:100"
    cap_add: tuple = ()
    read_only_root: bool = False
    tmpfs: tuple = (("/tmp", "rw,nosuid,nodev,size=1g"),)
    security_opt: tuple = ()
    gpu_driver: str = "nvidia"
    gpu_request_style: str = "device-ids"  # or "cdi"


@dataclass(frozen=True)
class ContainerSpec:
    """What DockerSpawner would have created, before hardening."""

    image: str
    name: str
    command: list
    environment: dict
    port: int
    volume_binds: dict = field(default_factory=dict)
    volume_mount_points: list = field(default_factory=list)
    mounts: list = field(default_factory=list)
    links: dict = field(default_factory=dict)
    network_name: str = "bridge"
    use_internal_ip: bool = True
    host_ip: str = "127.0.0.1"
    remove: bool = True
    extra_create_kwargs: dict = field(default_factory=dict)
    extra_host_config: dict = field(default_factory=dict)


def deep_merge(dest, src):
    """Merge ``src`` into a copy of ``dest``; nested dicts merge, other values replace."""
    out = copy.deepcopy(dest)
    for key, value in (src or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def device_requests(gpus, hardening):
    """Docker DeviceRequests for exactly the allocated GPU ids."""
    if not gpus:
        return []
    if hardening.gpu_request_style == "cdi":
        names = [g if "=" in g else f"nvidia.com/gpu={g}" for g in gpus]
        return [{"driver": "cdi", "device_ids": names}]
    return [{"driver": hardening.gpu_driver, "device_ids": list(gpus), "capabilities": [["gpu"]]}]


def policy_version(spec, limits, hardening, package_version, admission=""):
    """A stable id of the security-relevant settings, stored as a label.

    It covers the image the container runs (its Id), the admission policy's
    digest, the hardening and limits: a stopped container whose label differs
    was created under another policy or from other content, and is recreated
    rather than restarted.
    """
    material = {
        "package": package_version,
        "image": spec.image,
        "admission": admission,
        "hardening": hardening.__dict__,
        "limits": limits.__dict__,
        "extra_host_config": spec.extra_host_config,
        "binds": spec.volume_binds,
        "mounts": spec.mounts,
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
    return f"{package_version}+{digest[:12]}"


def build_create_kwargs(spec, limits, hardening, labels):
    """Return ``create_container`` kwargs; ``host_config`` holds ``create_host_config`` kwargs."""
    create = {
        "image": spec.image,
        "environment": dict(spec.environment),
        "volumes": list(spec.volume_mount_points),
        "name": spec.name,
        "command": list(spec.command),
        "ports": {f"{spec.port}/tcp": None},
    }
    create = deep_merge(create, spec.extra_create_kwargs)
    create["user"] = hardening.user  # resolved (numeric) by the plan, extra_create_kwargs' user included
    create["image"], create["name"] = spec.image, spec.name  # never from extra_create_kwargs
    create["labels"] = {**(create.get("labels") or {}), **labels}

    host = {
        "auto_remove": spec.remove,
        "binds": dict(spec.volume_binds),
        "links": dict(spec.links),
        "mounts": list(spec.mounts),
    }
    if not spec.use_internal_ip:
        host["port_bindings"] = {spec.port: (spec.host_ip,)}
    host = deep_merge(host, spec.extra_host_config)
    host.setdefault("network_mode", spec.network_name)

    admin_opts = [o for o in host.get("security_opt") or () if "no-new-privileges" not in str(o)]
    host.update(
        privileged=False,
        cap_drop=["ALL"],
        cap_add=sorted(set(hardening.cap_add)),
        security_opt=[NO_NEW_PRIVILEGES, *hardening.security_opt, *admin_opts],
        mem_limit=limits.memory,
        memswap_limit=limits.memory,  # no swap beyond the memory limit
        cpu_period=CPU_PERIOD,  # the CFS quota as DockerSpawner writes it (docker run --cpus sets the same)
        cpu_quota=int(round(limits.cpus * CPU_PERIOD)),
        pids_limit=limits.pids,
        shm_size=limits.shm,
        read_only=hardening.read_only_root,
    )
    if limits.memory_guarantee:
        host["mem_reservation"] = limits.memory_guarantee
    if limits.cpu_guarantee:
        host["cpu_shares"] = max(2, int(limits.cpu_guarantee * 1024))
    if hardening.read_only_root:
        host["tmpfs"] = {**dict(hardening.tmpfs), **(host.get("tmpfs") or {})}
    requests = device_requests(limits.gpus, hardening)
    if requests:
        host["device_requests"] = requests
    create["host_config"] = host
    return create
