"""Build the keyword arguments of ``docker create`` for one notebook container.

Pure: takes what the spawner knows (DockerSpawner's settings, the limits and
the hardening policy) and returns the arguments for docker-py's
``create_container``, with ``host_config`` as the keyword arguments of
``create_host_config``. Admin extras are merged in one place
(:func:`merge_request`) and the hub's protections applied after them, so
nothing an admin merges in can undo them; unsafe settings are refused
earlier, by name (:mod:`.safety`), and the final request is checked whole
(:mod:`.invariants`).
"""

import copy
import hashlib
import json
from dataclasses import dataclass, field

from ..units import parse_bytes
from .safety import env_dict

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
    """The security settings every container gets; each field is filled from the trait tagged with
    its name (``spawner/settings/hardening.py``), so a new setting is a trait and a field here."""

    run_as_uid: int = 1000        # when the image's USER is root (or unset)
    run_as_gid: int = 100
    cap_add: tuple = ()
    read_only_root: bool = False  # the trait's default is True
    tmpfs_size: str = "1g"        # /tmp with a read-only root
    gpu_request_style: str = "device-ids"  # or "cdi"
    log_driver: str = "json-file"  # or "local"; bounded by the profile's log_max_size and log_max_file

    @property
    def tmpfs(self):
        return {"/tmp": f"rw,nosuid,nodev,size={self.tmpfs_size}"}

    def tmpfs_for(self, memory):
        """/tmp for a container of ``memory`` bytes: ``tmpfs_size``, at most the memory limit its files
        count against (a larger ``tmpfs_size`` an admin sets is refused by the settings checks; the
        default 1g fits a smaller profile this way)."""
        try:
            size = parse_bytes(self.tmpfs_size)
        except (TypeError, ValueError):  # refused by the settings checks, by name
            return self.tmpfs
        return {"/tmp": f"rw,nosuid,nodev,size={memory}"} if memory and size > memory else self.tmpfs

    @property
    def gpu_driver(self):
        return "cdi" if self.gpu_request_style == "cdi" else "nvidia"


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
        return [{"driver": "cdi", "device_ids": cdi_names(gpus)}]
    return [{"driver": hardening.gpu_driver, "device_ids": list(gpus), "capabilities": [["gpu"]]}]


def cdi_names(gpus):
    return [g if "=" in g else f"nvidia.com/gpu={g}" for g in gpus]


def log_config(limits, hardening):
    """The bounded log configuration of a container (Docker API form): ``max-size`` in bytes."""
    return {"Type": hardening.log_driver,
            "Config": {"max-size": str(limits.log_max_size), "max-file": str(limits.log_max_file)}}


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


def merge_request(spec):
    """DockerSpawner's ``create_container`` and ``create_host_config`` arguments with the admin's
    extras merged in: the one place ``extra_create_kwargs`` and ``extra_host_config`` are merged.

    The environment is merged as a dict whatever form the extras use (a list of
    ``K=V`` would otherwise replace the whole environment, the hub's own values with it).
    """
    extra = dict(spec.extra_create_kwargs or {})
    environment = {**spec.environment, **env_dict(extra.pop("environment", None))}
    create = {
        "image": spec.image,
        "environment": environment,
        "volumes": list(spec.volume_mount_points),
        "name": spec.name,
        "command": list(spec.command),
        "ports": {f"{spec.port}/tcp": None},
    }
    create = deep_merge(create, extra)
    host = {
        "auto_remove": spec.remove,
        "binds": dict(spec.volume_binds),
        "links": dict(spec.links),
        "mounts": list(spec.mounts),
        "network_mode": spec.network_name,
    }
    if not spec.use_internal_ip:
        host["port_bindings"] = {spec.port: (spec.host_ip,)}
    return create, deep_merge(host, spec.extra_host_config)


def _tmpfs_dict(value):
    """An admin's ``tmpfs`` (docker-py takes ``{path: options}`` or ``["path:options"]``) as a dict."""
    if isinstance(value, dict):
        return value
    if isinstance(value, (list, tuple)):
        return dict((str(t).split(":", 1) + [""])[:2] for t in value)
    raise TypeError(f"tmpfs must be a dict {{path: options}} or a list of 'path:options', not {value!r}")


def build_create_kwargs(spec, limits, hardening, labels, user, gpu_env=None, network=None, keys_mount=None,
                        policy_mount=None, policy_env=None):
    """``create_container`` kwargs (``host_config`` as ``create_host_config`` kwargs).

    The admin's extras are merged first (:func:`merge_request`); the hub's protections are
    applied after, so nothing merged can undo them: the numeric ``user``, the GPU variables
    of the lease (``gpu_env``), the isolated ``network`` (None: isolation is off, and the
    admin's ``network_mode`` stands), limits, capabilities and security options, and a
    bounded log configuration when the admin gave none; the read-only ``keys_mount`` and
    ``policy_mount`` (``(volume, directory)``) with the ``policy_env`` that points pip at it. The
    result is then checked as a whole (:mod:`.invariants`).
    """
    create, host = merge_request(spec)
    create["user"] = user
    create["image"], create["name"] = spec.image, spec.name  # never from extra_create_kwargs
    create["labels"] = {**(create.get("labels") or {}), **labels}
    create["environment"] = {**create["environment"], **(gpu_env or {}), **(policy_env or {})}
    if network is not None:
        host["network_mode"] = network
    admin_opts = [o for o in host.get("security_opt") or () if "no-new-privileges" not in str(o)]
    host.update(
        privileged=False,
        cgroupns="private",  # Docker's default on cgroup v1 hosts is the host's cgroup namespace
        cap_drop=["ALL"],
        cap_add=sorted(set(hardening.cap_add)),
        security_opt=[NO_NEW_PRIVILEGES, *admin_opts],
        mem_limit=limits.memory,
        memswap_limit=limits.memory,  # no swap beyond the memory limit
        cpu_period=CPU_PERIOD,  # the CFS quota as DockerSpawner writes it (docker run --cpus sets the same)
        cpu_quota=int(round(limits.cpus * CPU_PERIOD)),
        pids_limit=limits.pids,
        shm_size=limits.shm,
        read_only=hardening.read_only_root,
    )
    if not host.get("log_config"):  # an admin's own log_config stays, and must be bounded (invariants)
        host["log_config"] = log_config(limits, hardening)
    if limits.disk:
        host["storage_opt"] = {"size": str(limits.disk)}  # an admin's storage_opt is refused (safety)
    if limits.memory_guarantee:
        host["mem_reservation"] = limits.memory_guarantee
    if limits.cpu_guarantee:
        host["cpu_shares"] = max(2, int(limits.cpu_guarantee * 1024))
    if hardening.read_only_root:
        host["tmpfs"] = {**hardening.tmpfs_for(limits.memory), **_tmpfs_dict(host.get("tmpfs") or {})}
    requests = device_requests(limits.gpus, hardening)
    if requests:
        host["device_requests"] = requests
    for mount in (keys_mount, policy_mount):
        if mount:
            volume, directory = mount
            create["volumes"] = [*create.get("volumes", []), directory]
            host["binds"] = {**(host.get("binds") or {}), volume: {"bind": directory, "mode": "ro"}}
    create["host_config"] = host
    return create
