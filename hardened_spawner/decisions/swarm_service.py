"""Turn the hardened ``docker create`` arguments into a Swarm service spec.

Pure. :mod:`.container` stays the one place that decides what a container
gets; this module translates its output for ``create_service`` and says which
settings a service cannot carry on this engine, so the spawner can enforce
them another way (placement on attested nodes) or tell the admin.

What changes on Swarm:
- GPUs are node generic resources (``NVIDIA-GPU``), reserved per task by the
  scheduler, not DeviceRequests (services cannot take those, moby #40133);
- ``/dev/shm`` and ``/tmp`` become tmpfs mounts;
- the bounded log configuration becomes the task's ``LogDriver``;
- ``no-new-privileges`` and other ``security_opt`` values cannot be set per
  service before Docker 25: the daemon-wide setting must hold on every node;
- SSH keys come as a swarm secret mounted where sshd reads them.
"""

import dataclasses
from dataclasses import dataclass, field

import docker.types as dt

from . import invariants

GPU_RESOURCE = "NVIDIA-GPU"
NNP_ENGINE_LABEL = "hardened-spawner.no-new-privileges"

# host_config keys a service expresses (directly or as mounts/resources)
_HANDLED = {
    "auto_remove", "binds", "links", "mounts", "port_bindings", "network_mode", "privileged",
    "cap_drop", "cap_add", "mem_limit", "cpu_period", "cpu_quota", "pids_limit", "shm_size", "read_only",
    "mem_reservation", "cpu_shares", "tmpfs", "device_requests", "security_opt", "memswap_limit", "log_config",
}


@dataclass(frozen=True)
class SwarmOptions:
    """What the swarm backend adds to the container's hardened arguments."""

    name: str
    gpus: int = 0
    gpu_resource: str = GPU_RESOURCE
    cpu_guarantee: float | None = None
    constraints: tuple = ()
    require_no_new_privileges: bool = True
    network: str = ""
    publish_port: bool = True
    ssh_port: int | None = None  # published too (host mode) when keys were delivered
    health_interval: float = 3.0
    secrets: tuple = field(default=())  # secret references, API form


def _mounts(create, host):
    mounts = []
    for source, bind in (host.get("binds") or {}).items():
        kind = "bind" if source.startswith("/") else "volume"
        mounts.append(dt.Mount(bind["bind"], source, type=kind, read_only=bind.get("mode") == "ro"))
    for m in host.get("mounts") or ():
        mounts.append(m if isinstance(m, dt.Mount) else dt.Mount(**m))
    for target, options in (host.get("tmpfs") or {}).items():
        size = next((o.split("=", 1)[1] for o in options.split(",") if o.startswith("size=")), None)
        mounts.append(dt.Mount(target, None, type="tmpfs", tmpfs_size=size))
    if host.get("shm_size"):
        mounts.append(dt.Mount("/dev/shm", None, type="tmpfs", tmpfs_size=host["shm_size"]))
    return mounts


def unsupported(host):
    """``(key, why)`` for settings a service on Docker 20.10 cannot carry."""
    out = []
    for opt in host.get("security_opt") or ():
        if "no-new-privileges" in opt:
            out.append(("security_opt", "no-new-privileges is daemon-wide on Swarm (set it in daemon.json)"))
        else:
            out.append(("security_opt", f"{opt!r} cannot be set per service"))
    if host.get("memswap_limit"):
        out.append(("memswap_limit", "swap cannot be limited per service; disable swap on the nodes"))
    for key in sorted(set(host) - _HANDLED):
        out.append((key, "not supported by Swarm services; ignored"))
    return out


def service_kwargs(create, options):
    """``create_service`` keyword arguments for the hardened create arguments ``create``."""
    host = create["host_config"]
    env = [f"{k}={v}" for k, v in (create.get("environment") or {}).items()]
    container = dt.ContainerSpec(
        image=create["image"],
        args=create.get("command"),
        env=env,
        user=create.get("user"),
        workdir=create.get("working_dir"),
        labels=create.get("labels"),
        mounts=_mounts(create, host),
        read_only=bool(host.get("read_only")),
        cap_drop=list(host.get("cap_drop") or []),
        cap_add=list(host.get("cap_add") or []) or None,
        secrets=list(options.secrets) or None,
        init=create.get("init"),
        # The image's HEALTHCHECK, checked more often: a swarm task reports "starting"
        # and publishes no port until its first passing check.
        healthcheck=dt.Healthcheck(interval=int(options.health_interval * 1e9), timeout=int(5e9), retries=3),
    )
    resources = dt.Resources(
        cpu_limit=host["cpu_quota"] * 10**9 // host["cpu_period"] if host.get("cpu_quota") else None,
        mem_limit=host.get("mem_limit"),
        mem_reservation=host.get("mem_reservation"),
        cpu_reservation=int(options.cpu_guarantee * 1e9) if options.cpu_guarantee else None,
        generic_resources={options.gpu_resource: options.gpus} if options.gpus else None,
    )
    if host.get("pids_limit"):
        resources.setdefault("Limits", {})["Pids"] = host["pids_limit"]
    log = {str(k).lower(): v for k, v in (host.get("log_config") or {}).items()}
    constraints = list(options.constraints)
    if options.require_no_new_privileges:
        constraints.append(f"engine.labels.{NNP_ENGINE_LABEL} == true")
    task = dt.TaskTemplate(
        container_spec=container,
        resources=resources,
        restart_policy=dt.RestartPolicy(condition="none"),
        placement=dt.Placement(constraints=constraints or None),
        networks=[options.network] if options.network else [],
        log_driver=dt.DriverConfig(log["type"], log.get("config")) if log.get("type") else None,
    )
    endpoint = None
    if options.publish_port:
        ports = [int(next(iter(create["ports"])).split("/")[0])]
        if options.ssh_port:
            ports.append(options.ssh_port)
        endpoint = dt.EndpointSpec(ports=[{"Protocol": "tcp", "TargetPort": p, "PublishMode": "host"} for p in ports])
    return {"task_template": task, "name": options.name, "labels": create.get("labels"),
            "endpoint_spec": endpoint}


def _privileges(spec):
    """A service's seccomp and AppArmor modes, as the security options they amount to."""
    privileges = spec.get("Privileges") or {}
    if ((privileges.get("Seccomp") or {}).get("Mode") or "").lower() == "unconfined":
        yield "seccomp=unconfined"
    if ((privileges.get("AppArmor") or {}).get("Mode") or "").lower() == "disabled":
        yield "apparmor=unconfined"


def recorded_problems(service, expected):
    """Invariants (:mod:`.invariants`) the service as Docker recorded it breaks: what a task will run.

    A service carries no security options (no-new-privileges is daemon-wide on
    Swarm, enforced by placement) and no swap limit; the rest is checked as for a container.
    """
    task = ((service.get("Spec") or {}).get("TaskTemplate") or {})
    spec = task.get("ContainerSpec") or {}
    limits = (task.get("Resources") or {}).get("Limits") or {}
    config = {"User": spec.get("User"), "Env": spec.get("Env")}
    host = {
        "CapDrop": spec.get("CapabilityDrop"), "CapAdd": spec.get("CapabilityAdd"),
        "Mounts": [m for m in spec.get("Mounts") or () if m.get("Type") != "tmpfs"],
        "ReadonlyRootfs": spec.get("ReadOnly"), "Memory": limits.get("MemoryBytes"),
        "MemorySwap": limits.get("MemoryBytes"), "PidsLimit": limits.get("Pids"),
        "NanoCpus": limits.get("NanoCPUs"), "SecurityOpt": ["no-new-privileges:true", *_privileges(spec)],
        "LogConfig": {"Type": (task.get("LogDriver") or {}).get("Name"),
                      "Config": (task.get("LogDriver") or {}).get("Options")},
    }
    # GPUs are generic resources here; a service spec records no runtime (each node's default runs the task)
    swarm = dataclasses.replace(expected, gpu_devices=(), network=None, runtime="")
    return invariants.check(spec.get("Image") or "", config, host, swarm, request=False)
