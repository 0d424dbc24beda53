"""The plan of one spawn: from what the checks found to the container's create arguments. Pure.

:func:`plan_spawn` takes flat facts (the admitted image, the chosen limits
with their GPU ids, the hardening settings, DockerSpawner's own settings as
a :class:`~.container.ContainerSpec`) and returns a :class:`SpawnPlan`: the
``create_container`` arguments, the labels that identify the container, the
policy version a stopped container is compared with, and the facts the audit
line records.
"""

from dataclasses import dataclass, field

import dataclasses

from . import gpu, users
from .container import (
    LABEL_GPUS, LABEL_MANAGED, LABEL_MEMORY, LABEL_OWNER, LABEL_POLICY, LABEL_PROFILE, LABEL_SERVER, Hardening,
    build_create_kwargs, policy_version,
)
from .reference import parse


@dataclass(frozen=True)
class SpawnInputs:
    user: str
    server: str
    image: str                # the reference the user asked for (audit, messages)
    image_info: dict          # docker inspect of the admitted image
    create_image: str         # what the container is created from: the admitted Id (or name@digest on Swarm)
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
    accounts: tuple = ("", "")  # the image's /etc/passwd and /etc/group texts
    policy_digest: str = ""     # the admission policy's digest ("" when admission is off)
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


def container_user(spec, accounts, uid, gid):
    """``(numeric "uid:gid", replaced)`` the container runs as, never uid or gid 0.

    ``spec`` (the image's USER, or the admin's ``extra_create_kwargs["user"]``) is
    resolved against the image's account files; root by any name becomes
    ``uid:gid``, and gid 0 becomes ``gid``. Raises :class:`.users.UnknownUser`
    for a name the image does not have.
    """
    resolved = users.resolve(spec, *accounts)
    if resolved.uid == 0:
        return f"{uid}:{gid}", True
    return f"{resolved.uid}:{resolved.gid or gid}", False


def plan_spawn(inputs):
    """The :class:`SpawnPlan` for ``inputs``."""
    image_user = (inputs.image_info.get("Config") or {}).get("User") or ""
    spec_user = (inputs.spec.extra_create_kwargs or {}).get("user") or image_user
    user, replaced = container_user(spec_user, inputs.accounts, inputs.run_as_uid, inputs.run_as_gid)
    spec = dataclasses.replace(inputs.spec, image=inputs.create_image)
    hardening = Hardening(
        user=user,
        cap_add=tuple(inputs.cap_add),
        read_only_root=inputs.read_only_root,
        tmpfs=(("/tmp", f"rw,nosuid,nodev,size={inputs.tmpfs_size}"),),
        gpu_request_style=inputs.gpu_request_style,
    )
    limits = inputs.limits
    version = policy_version(spec, limits, hardening, inputs.package_version, inputs.policy_digest)
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
    create = build_create_kwargs(spec, limits, hardening, labels)
    if inputs.keys_mount:
        volume, directory = inputs.keys_mount
        create.setdefault("volumes", []).append(directory)
        create["host_config"].setdefault("binds", {})[volume] = {"bind": directory, "mode": "ro"}
    digest = image_digest(inputs.image, inputs.image_info)
    facts = {"image": inputs.image, "digest": digest, "image_id": inputs.image_info["Id"], "container_user": user,
             "limits": limits.as_audit(), "policy_version": version, "profile": inputs.profile, "sbom": inputs.sbom}
    return SpawnPlan(create, user, replaced, version, digest, facts)
