"""The plan of one spawn: from what the checks found to the container's create arguments. Pure.

:func:`plan_spawn` takes flat facts (the admitted image, the chosen limits
with their GPU ids, the hardening settings, DockerSpawner's own settings as
a :class:`~.container.ContainerSpec`) and returns a :class:`SpawnPlan`: the
``create_container`` arguments, the labels that identify the container, the
policy version a stopped container is compared with, and the facts the audit
line records.
"""

from dataclasses import dataclass, field

from . import gpu, safety
from .container import (
    LABEL_GPUS, LABEL_MANAGED, LABEL_MEMORY, LABEL_OWNER, LABEL_POLICY, LABEL_PROFILE, LABEL_SERVER, Hardening,
    build_create_kwargs, policy_version,
)
from .reference import parse


@dataclass(frozen=True)
class SpawnInputs:
    user: str
    server: str
    image: str                # the reference the container is created from
    image_info: dict          # docker inspect of that image
    spec: object              # container.ContainerSpec (DockerSpawner's settings, evaluated)
    limits: object            # limits.Limits, GPU ids included
    profile: str              # the profile's slug
    package_version: str
    run_as_uid: int = 1000
    run_as_gid: int = 100
    cap_add: tuple = ()
    read_only_root: bool = False
    tmpfs_size: str = "1g"
    gpu_request_style: str = "device-ids"
    keys_mount: tuple | None = None  # (volume, directory): keys in a read-only volume (read-only root)
    sbom: str = ""            # serial number of the admitted image's SBOM ("" when admission is off)


@dataclass(frozen=True)
class SpawnPlan:
    create_kwargs: dict
    user: str                 # the user spec the container runs as
    user_replaced: bool       # the image's USER was root and was replaced
    policy_version: str
    digest: str
    facts: dict = field(default_factory=dict)  # for the audit line


def image_digest(image, image_info):
    """The content digest the image is known by: the pinned or registry digest, else its id."""
    ref = parse(image)
    if ref.digest:
        return ref.digest
    for repo_digest in image_info.get("RepoDigests") or ():
        name, _, digest = repo_digest.partition("@")
        if parse(name).name == ref.name:
            return digest
    return image_info["Id"]


def container_user(image_user, uid, gid):
    """``(user spec, replaced)``: the image's USER unless it is root, then ``uid:gid``."""
    if safety.is_root_user(image_user):
        return f"{uid}:{gid}", True
    return image_user, False


def plan_spawn(inputs):
    """The :class:`SpawnPlan` for ``inputs``."""
    image_user = (inputs.image_info.get("Config") or {}).get("User") or ""
    user, replaced = container_user(image_user, inputs.run_as_uid, inputs.run_as_gid)
    hardening = Hardening(
        user=user,
        cap_add=tuple(inputs.cap_add),
        read_only_root=inputs.read_only_root,
        tmpfs=(("/tmp", f"rw,nosuid,nodev,size={inputs.tmpfs_size}"),),
        gpu_request_style=inputs.gpu_request_style,
    )
    limits = inputs.limits
    version = policy_version(inputs.spec, limits, hardening, inputs.package_version)
    labels = {
        LABEL_MANAGED: "true",
        LABEL_OWNER: inputs.user,
        LABEL_SERVER: inputs.server,
        LABEL_POLICY: version,
        LABEL_MEMORY: str(limits.memory),
        LABEL_PROFILE: inputs.profile,
    }
    if limits.gpus:
        labels[LABEL_GPUS] = gpu.format_label(limits.gpus)
    create = build_create_kwargs(inputs.spec, limits, hardening, labels)
    if inputs.keys_mount:
        volume, directory = inputs.keys_mount
        create.setdefault("volumes", []).append(directory)
        create["host_config"].setdefault("binds", {})[volume] = {"bind": directory, "mode": "ro"}
    digest = image_digest(inputs.image, inputs.image_info)
    facts = {"image": inputs.image, "digest": digest, "image_id": inputs.image_info["Id"], "container_user": user,
             "limits": limits.as_audit(), "policy_version": version, "profile": inputs.profile, "sbom": inputs.sbom}
    return SpawnPlan(create, user, replaced, version, digest, facts)
