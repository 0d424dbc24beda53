"""Delivering the runtime conda guard's files (:mod:`..admission.guard`) into a server (a thin shell).

On a writable root they are unpacked into the created, not yet started
container (``put_archive`` at ``/``). On a read-only root Docker refuses
that, so the plan (:func:`..decisions.plan.guard_delivery`) puts them in a
per-server volume mounted read-only at ``/etc/conda``: the volume is
created (labelled with its owner and server) and filled through a helper
container that mounts it read-write and is never started
(:func:`..keys.live.put_via_volume`), before the server's container is
created; it is removed with the server, and when a start fails.
"""

from docker.errors import APIError, DockerException

from ..admission import guard
from ..decisions.container import LABEL_MANAGED, LABEL_OWNER, LABEL_SERVER
from ..decisions.readonly import POLICY_DIR
from ..errors import SpawnRefused
from ..keys.live import put_via_volume
from .key_delivery import KeyDelivery, remove_volume

LABEL_POLICY_VOLUME = "hardened-spawner.conda-policy"


def policy_volume_name(object_name):
    return f"{object_name}-conda-policy"


def _refused(error, where):
    explanation = getattr(error, "explanation", None) or error
    return SpawnRefused(f"The conda/pip policy files could not be written {where}: {explanation}. "
                        "Nothing was started; tell the hub admin.", reason="conda-guard-failed")


class CondaPolicy:
    """``io``: a :class:`~.clients.DockerIO`; ``spawner``: the server's spawner (audit fields, names)."""

    def __init__(self, io, spawner):
        self.io, self.spawner = io, spawner

    def _audit(self, plan, files, **fields):
        self.spawner.audit.write("conda.guard", **self.spawner.audit_fields(
            image=plan.facts["image"], files=sorted(files), **fields))

    async def prepare_volume(self, plan):
        """Before the container is created: the policy volume of a read-only root, holding the files."""
        if not plan.policy_mount:
            return
        volume, directory = plan.policy_mount
        labels = {LABEL_MANAGED: "true", LABEL_OWNER: self.spawner.user.name,
                  LABEL_SERVER: self.spawner.name or "", LABEL_POLICY_VOLUME: self.spawner.object_name}
        try:
            await self.io("create_volume", volume, labels=labels)
            # nocopy: the volume holds only the hub's files, never the image's own /etc/conda
            await self.io.run(put_via_volume, self.io.client, plan.image_id, volume, directory,
                              guard.archive(plan.policy_files), self.spawner.user.name, "rw,nocopy")
        except DockerException as e:
            await self.remove_volume(plan)
            raise _refused(e, f"into the volume {volume}") from None
        self._audit(plan, [f"{POLICY_DIR}/{name}" for name in plan.policy_files], volume=volume)

    async def deliver(self, container_id, plan):
        """Into the created (not yet started) container of a writable root."""
        if not plan.guard_files:
            return
        try:
            await self.io("put_archive", container_id, "/", guard.archive(plan.guard_files))
        except APIError as e:  # the spawner removes the container it just created
            raise _refused(e, "into the container") from None
        self._audit(plan, ["/" + p for p in plan.guard_files], container=container_id[:12])

    async def remove_volume(self, plan=None):
        """The server's policy volume goes (with the server, or a start that failed)."""
        volume = plan.policy_mount[0] if plan and plan.policy_mount else self.spawner.policy_volume()
        await remove_volume(self.io, volume, self.spawner.log, "conda policy volume")


async def remove_server_volumes(spawner):
    """A read-only root's per-server volumes (its SSH keys, its conda/pip policy) go with its container:
    at its removal, and when a start that created it fails."""
    if spawner.read_only_root and spawner.ssh_key_store().configured():
        await KeyDelivery(spawner.docker_io).remove_volume(spawner.keys_volume(), spawner.log)
    if spawner.read_only_root and spawner.guard_files():
        await CondaPolicy(spawner.docker_io, spawner).remove_volume()
