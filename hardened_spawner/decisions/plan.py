"""The plan of one spawn: everything the backends need, from what the checks found. Pure.

:func:`plan_spawn` takes flat facts (the selection, the admitted image and
its account files, the limits with their GPU ids, the hardening settings,
DockerSpawner's own settings as a :class:`~.container.ContainerSpec`, the
user's keys, the policy files, the daemon's facts) and returns a
:class:`SpawnPlan`: the final ``create_container`` arguments, checked whole
against the invariants (:mod:`.invariants`), the account sshd logs in as
(read from the *admitted* image, never from a container a user has run),
the keys and policy files to deliver, the GPU lease, and what the audit line
records. A backend reads only the plan. :class:`NotHardened` is raised when
the final request breaks an invariant, whatever produced it.
"""

import dataclasses
from dataclasses import dataclass, field

from ..errors import UnsafeConfig
from . import gpu, invariants, readonly, users
from .disk import storage_size_problem
from .container import (
    LABEL_GPUS, LABEL_MANAGED, LABEL_MEMORY, LABEL_OWNER, LABEL_POLICY, LABEL_PROFILE, LABEL_SERVER,
    build_create_kwargs, cdi_names, policy_version,
)
from .reference import parse


class NotHardened(Exception):
    """The final create request (or the created container) breaks invariants: ``violations``."""

    def __init__(self, violations):
        super().__init__("; ".join(v.message for v in violations))
        self.violations = tuple(violations)


@dataclass(frozen=True)
class SpawnInputs:
    user: str
    server: str
    selection: object         # profiles.Selection: the profile and the image reference
    image_info: dict          # docker inspect of the admitted image
    create_image: str         # what the container is created from: the admitted Id (or name@digest on Swarm)
    spec: object              # container.ContainerSpec (DockerSpawner's settings, evaluated)
    limits: object            # limits.Limits, GPU ids included
    hardening: object         # container.Hardening
    package_version: str
    daemon: invariants.Daemon = invariants.Daemon()
    network: str | None = None  # the isolated network (None: isolate_containers is off)
    gpu_env: dict = field(default_factory=dict)  # what the backend sets for the lease (or for none)
    accounts: tuple = ("", "")  # the admitted image's /etc/passwd and /etc/group texts
    keys: str | None = None   # authorized_keys text (None: nothing to deliver; "": an empty file)
    keys_mount: tuple | None = None  # (volume, directory): keys in a read-only volume (read-only root)
    host_key: object = None   # keys.host_certs.HostKey: the container's certified host key (None with no keys)
    guard_files: dict = field(default_factory=dict)  # {path: text} of the conda/pip policy files
    policy_volume: str = ""   # with a read-only root: the per-server volume the guard's files go in ("" none)
    home_check: bool = True   # judge whether the image's user can write its home (not for sample plans)
    extra_forbidden: tuple = ()  # the admin's extra_forbidden_host_paths
    policy_digest: str = ""     # the admission policy's digest ("" when admission is off)
    sbom: str = ""            # serial number of the admitted image's SBOM ("" when admission is off)


@dataclass(frozen=True)
class SpawnPlan:
    create_kwargs: dict
    user: str                 # the numeric uid:gid the container runs as
    user_replaced: bool       # the image's USER was root and was replaced
    login: str | None         # the account sshd logs in as (None: the image has none for the user)
    keys: str | None
    keys_mount: tuple | None
    host_key: object          # keys.host_certs.HostKey or None
    guard_files: dict        # {path: text} put into the created container (a writable root)
    profile: object           # profiles.Profile
    gpus: tuple               # the leased GPU ids (Docker); a Swarm task gets profile.gpus from the scheduler
    network: str | None
    expected: invariants.Expected
    policy_version: str
    digest: str
    image_id: str
    facts: dict = field(default_factory=dict)  # for the audit line
    policy_mount: tuple | None = None  # (volume, /etc/conda): the guard's files in a read-only volume
    policy_files: dict = field(default_factory=dict)  # {name: text} written into that volume


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


def guard_delivery(inputs):
    """``(files into the container, (volume, directory) or None, files into the volume)``: on a read-only
    root the guard's files go into the per-server policy volume (:mod:`.readonly`)."""
    files = readonly.volume_files(inputs.guard_files) if inputs.hardening.read_only_root else {}
    if files and inputs.policy_volume:
        return {}, (inputs.policy_volume, readonly.POLICY_DIR), files
    return dict(inputs.guard_files), None, {}


def expected_for(inputs, user, policy_mount=None, policy_files=None):
    """What the container must be (:class:`.invariants.Expected`)."""
    hardening, limits, daemon = inputs.hardening, inputs.limits, inputs.daemon
    devices = cdi_names(limits.gpus) if hardening.gpu_request_style == "cdi" else tuple(limits.gpus)
    return invariants.Expected(
        image=inputs.create_image, user=user, limits=limits, cap_add=tuple(hardening.cap_add),
        network=inputs.network, gpu_env=tuple(sorted(inputs.gpu_env.items())), gpu_driver=hardening.gpu_driver,
        gpu_devices=tuple(devices), read_only_root=hardening.read_only_root,
        forbidden_paths=(*daemon.forbidden_paths(), *inputs.extra_forbidden),
        forbidden_gids=daemon.forbidden_gids(), runtime=daemon.default_runtime,
        policy_volume=policy_mount[0] if policy_mount else "", pip_config=bool(policy_files and
                                                                                "pip.conf" in policy_files),
    )


def plan_spawn(inputs):
    """The :class:`SpawnPlan` for ``inputs``; :class:`NotHardened` when the final request breaks an invariant."""
    image_user = (inputs.image_info.get("Config") or {}).get("User") or ""
    spec_user = (inputs.spec.extra_create_kwargs or {}).get("user") or image_user
    hardening, limits, profile = inputs.hardening, inputs.limits, inputs.selection.profile
    # Judged when the daemon's driver is known (a spawn's docker info; not validate-config's sample plans,
    # where Docker itself would refuse the storage_opt at create and the invariants check what it recorded).
    known = limits.disk and inputs.daemon.storage_driver
    problem = storage_size_problem(inputs.daemon.storage_driver, inputs.daemon.backing_fs) if known else ""
    if problem:  # before anything is created: Docker would answer a 500 at create
        raise UnsafeConfig([(f"disk_limit of profile {profile.slug!r}", problem)])
    user, replaced = container_user(spec_user, inputs.accounts, hardening.run_as_uid, hardening.run_as_gid)
    spec = dataclasses.replace(inputs.spec, image=inputs.create_image)
    version = policy_version(spec, limits, hardening, inputs.package_version, inputs.policy_digest)
    labels = {
        LABEL_MANAGED: "true",
        LABEL_OWNER: inputs.user,
        LABEL_SERVER: inputs.server,
        LABEL_POLICY: version,
        LABEL_MEMORY: str(limits.memory),
        LABEL_PROFILE: profile.slug,
    }
    if limits.gpus:
        labels[LABEL_GPUS] = gpu.format_label(limits.gpus)
    guard_files, policy_mount, policy_files = guard_delivery(inputs)
    create = build_create_kwargs(spec, limits, hardening, labels, user, inputs.gpu_env, inputs.network,
                                 inputs.keys_mount, policy_mount, readonly.volume_environment(policy_files))
    expected = expected_for(inputs, user, policy_mount, policy_files)
    violations = invariants.of_request(create, expected, inputs.daemon.api_version)
    if violations:
        raise NotHardened(violations)
    if hardening.read_only_root and inputs.home_check:  # before anything is created: it would die at start
        home = readonly.home_of(create, inputs.accounts[0], (inputs.image_info.get("Config") or {}).get("Env"))
        problem = readonly.home_problem(inputs.selection.image, home, readonly.writable_mounts(create["host_config"]))
        if problem:
            raise UnsafeConfig([("read_only_root", problem)])
    digest = image_digest(inputs.selection.image, inputs.image_info)
    facts = {"image": inputs.selection.image, "digest": digest, "image_id": inputs.image_info["Id"],
             "container_user": user, "limits": limits.as_audit(), "policy_version": version,
             "profile": profile.slug, "sbom": inputs.sbom}
    if inputs.host_key is not None:
        facts["ssh_host_key"] = inputs.host_key.fingerprint
    login = users.resolve(user, *inputs.accounts).name or None
    return SpawnPlan(
        create_kwargs=create, user=user, user_replaced=replaced, login=login, keys=inputs.keys,
        host_key=inputs.host_key, keys_mount=inputs.keys_mount, guard_files=guard_files, profile=profile,
        gpus=tuple(limits.gpus), network=inputs.network, expected=expected, policy_version=version,
        digest=digest, image_id=inputs.image_info["Id"], facts=facts, policy_mount=policy_mount,
        policy_files=policy_files,
    )
