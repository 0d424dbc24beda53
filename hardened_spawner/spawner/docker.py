"""HardenedDockerSpawner: the hardened pipeline on one Docker host.

The backend hooks of :mod:`.base`, for plain containers:

- GPUs come from the hub's exclusive pool (:mod:`.gpus`) as DeviceRequests;
  a daemon without the NVIDIA runtime is told in words, and the GPU freed;
- keys are written into the created container (:mod:`.key_delivery`), and
  the conda/pip policy files beside them; the conda prefix's drift is
  audited at stop;
- a server that died of OOM is reported in words in the hub log, the audit
  log and at the next visit (:mod:`.oom_watch`).
"""

import asyncio
import dataclasses

from traitlets import Bool, default

from docker.errors import APIError, DockerException, NotFound

from ..admission import guard, layers
from ..decisions import gpu
from ..errors import SpawnRefused
from ..keys.delivery import KEYS_DIR
from ..keys.targets import ssh_command
from . import clients
from .base import SpawnPipeline
from .gpus import GpuDiscoveryFailed, GpuPool
from .key_delivery import KeyDelivery
from .networks import ServerNetwork
from .oom_watch import OomWatch

_NO_DRIVER = "could not select device driver"


class HardenedDockerSpawner(SpawnPipeline):
    """A DockerSpawner whose containers are locked down by default.

    Every container gets ``cap_drop ALL``, ``no-new-privileges``, Docker's
    default seccomp profile, a non-root uid, and memory, CPU and pids limits.
    Privileged mode, host namespaces, the Docker socket and sensitive host
    paths are refused whatever the configuration asks.
    """

    isolate_containers = Bool(
        True, config=True,
        help="""Run servers on a network where containers cannot reach each other (``network_name``,
        created on first use as a bridge with inter-container communication off).

        The hub, proxy and SSH gateway still reach every server from the host; a user's container
        cannot reach another user's notebook server or sshd around the proxy and the gateway. A
        spawn is refused when ``network_name`` names a network that lets containers meet (such as
        Docker's default ``bridge``). False: use ``network_name`` as it is.""",
    )

    _oom = None  # OomWatch: the notice shown at the next visit survives stops and hub restarts

    @default("network_name")
    def _default_network_name(self):
        return "hardened-spawner"

    @property
    def oom(self):
        if self._oom is None:
            self._oom = OomWatch(self.docker_io, self.log)
        return self._oom

    # ---- GPUs ------------------------------------------------------------------------
    def gpu_pool(self):
        """This hub's pool for the daemon, inventory and sharing (shared by every spawner)."""
        return clients.gpu_pool(self.gpu_pool_key(),
                                lambda: GpuPool(self.gpu_ids, self.gpu_sharing, self.docker_io, self.audit, self.log))

    def gpu_pool_key(self):
        return clients.docker_url(self.client_kwargs), tuple(self.gpu_ids), self.gpu_sharing

    async def gpus_free(self):
        try:
            pool = await self.gpu_pool().ready()
        except Exception as e:  # the form still renders; the spawn reports the failure
            self.log.warning("GPU availability unknown for the options form: %s", e)
            return None
        return pool.free(), pool.total

    async def reserve_gpus(self, profile, limits):
        """Allocate the profile's GPUs (the last check of a spawn); ``limits`` with their ids."""
        if not profile.gpus:
            return limits
        pool = self.gpu_pool()
        try:
            await pool.ready()
        except GpuDiscoveryFailed as e:
            raise SpawnRefused(
                f"The hub could not list its GPUs with nvidia-smi ({e}); ask the hub admin to "
                "check the NVIDIA driver or set gpu_ids.", reason="gpu-discovery") from None
        if not pool.total:
            raise SpawnRefused(
                f"Profile {profile.title()} needs a GPU, but this hub has none: gpu_ids is empty and "
                f"nvidia-smi found none. Pick a profile without GPUs, or ask the hub admin to set gpu_ids.",
                reason="gpu-none")
        try:
            gpus = await pool.allocate(self.container_name, profile.gpus, self.user.name, self.gpu_quota())
        except gpu.GpuUnavailable as e:
            reason = "gpu-quota" if isinstance(e, gpu.GpuQuotaExceeded) else "gpu-busy"
            raise SpawnRefused(self._busy_message(e, profile), reason=reason) from None
        self.say(f"Allocated GPU{'s' if len(gpus) > 1 else ''} {', '.join(gpus)} for profile {profile.display_name}"
                 + (f"; it is {profile.reclaim.describe()}" if profile.reclaim.active else ""))
        self.audit.write("gpu.allocate", **self.audit_fields(profile=profile.slug, gpus=list(gpus)))
        return dataclasses.replace(limits, gpus=gpus)

    def gpu_quota(self):
        """Most GPUs this user may hold across all their servers (0: no cap).

        ``max_gpus_per_user`` when set; an identity provider's GPU entitlement caps it
        too, so named servers cannot multiply a 1-GPU entitlement.
        """
        caps = [c for c in (self.max_gpus_per_user, self._granted.gpus if self._granted else 0) if c]
        return min(caps) if caps else 0

    def _busy_message(self, error, profile):
        quota = isinstance(error, gpu.GpuQuotaExceeded)
        room = min(error.free, error.limit - error.held) if quota else error.free
        others = self.choices().others_fitting(profile, room)
        instead = f"Pick {' or '.join(others)} instead, or try again later" if others else "Try again later"
        if quota:
            text = (f"You already hold {error.held} GPU(s) on your other servers and may hold at most "
                    f"{error.limit} at once, so profile {profile.title()} cannot start. "
                    f"Stop another GPU server. {instead}.")
        else:
            text = (f"No GPU is free for profile {profile.title()}: it needs {error.needed} and "
                    f"{error.free} of this hub's {error.total} GPUs are free. "
                    f"{instead}: a GPU is freed as soon as the server holding it stops.")
        return f"{text} {self.gpu_busy_hint}".strip()

    def release_gpus(self, reason, started_only=False):
        """Free this server's GPUs (if it holds any) and say so in the audit log.

        ``started_only``: leave GPUs of a start still in progress alone (poll can
        run during a start, and see the container created but not yet running).
        """
        pool = clients.gpu_pools.get(self.gpu_pool_key())
        freed = pool.release(self.container_name, confirmed_only=started_only) if pool else ()
        if freed:
            self.log.info("%s: GPU %s freed (%s)", self._log_name, ",".join(freed), reason)
            self.audit.write("gpu.release", **self.audit_fields(gpus=list(freed), reason=reason))
        return freed

    async def start_failed(self, error):
        """Free the GPUs of a start that failed; a SpawnRefused instead when Docker has no GPU runtime."""
        self.release_gpus("start failed")
        if not (isinstance(error, APIError) and _NO_DRIVER in str(error)):
            return None
        profile = self._selection.profile if self._selection else None
        name = f"profile {profile.title()}" if profile else "this profile"
        if self.gpu_request_style == "cdi":
            what = ("Docker on this host cannot use CDI device names (it needs Docker 25 or later with CDI "
                    "enabled); ask the hub admin to set gpu_request_style='device-ids' or upgrade Docker")
        else:
            what = ("this host has no NVIDIA container runtime: Docker could not select the 'nvidia' device "
                    "driver. Ask the hub admin to install nvidia-container-toolkit and restart Docker")
        return SpawnRefused(f"Your server with {name} could not start: {what}. The GPU was released; "
                            "a profile without GPUs still works.", reason="no-gpu-runtime", detail=str(error))

    def started(self):
        """The container runs: its GPUs are now on Docker's list; the OOM notice was shown."""
        self.gpu_pool().confirm(self.container_name)
        self.oom.shown()

    # ---- create and start --------------------------------------------------------------
    def keys_volume(self):
        return f"{self.object_name}-ssh-keys"

    def keys_mount(self):
        """With a read-only root, keys live in a per-server volume mounted read-only."""
        if self.read_only_root and self._ssh_authorized_keys is not None:
            return self.keys_volume(), KEYS_DIR
        return None

    async def create_object(self):
        plan = await self.plan_for_create()
        if await ServerNetwork(self.docker_io, clients.flights()).ensure(self.network_name, self.isolate_containers):
            self.audit.write("network.created", network=self.network_name, isolated=True)
        kwargs = dict(plan.create_kwargs)
        kwargs["host_config"] = self.client.create_host_config(**kwargs["host_config"])
        obj = await self.docker("create_container", **kwargs)
        # as DockerSpawner's: start() records the id; a failure from there on removes it
        self._created_here = True
        self._admitted_image = plan.facts["image_id"]
        return obj

    async def remove_if_created_here(self):
        if self._created_here and self.object_id:
            try:
                await self.docker("remove_container", self.object_id, force=True, v=True)
            except APIError as e:
                self.log.warning("could not remove failed container %s: %s", self.object_id[:12], e)
            self.object_id = ""

    async def deliver_conda_guard(self, container_id):
        """Put the policy's .condarc and pip.conf into the created (not yet started) container."""
        files = self.guard_files()
        if not files:
            return
        try:
            await self.docker_io("put_archive", container_id, "/", guard.archive(files))
        except APIError as e:  # the spawner removes the container it just created
            raise SpawnRefused(
                f"The conda/pip policy files could not be written into the container: {e.explanation or e}. "
                "With read_only_root the hub cannot add them; tell the hub admin.",
                reason="conda-guard-failed") from None
        self.audit.write("conda.guard", **self.audit_fields(
            image=self.image, container=container_id[:12], files=sorted("/" + p for p in files)))

    def key_delivery(self):
        return KeyDelivery(self.docker_io, clients.logins)

    async def deliver_ssh_keys(self):
        """Write the accepted keys (or an empty file) into the created container."""
        text, delivery = self._ssh_authorized_keys, self.key_delivery()
        info = await self.docker_io("inspect_container", self.container_id)
        user_spec = (info.get("Config") or {}).get("User") or ""

        async def this_container():
            return self.container_id

        login = await delivery.login_name(info.get("Image"), user_spec, this_container)
        if login is None:
            if text:
                self.say(f"SSH unavailable: the image has no account for {user_spec or 'its user'}")
            return False
        volume = self.keys_volume() if self.read_only_root else None
        try:
            await delivery.write(self.container_id, login, text, volume=volume, image=self.image,
                                 owner=self.user.name)
        except NotFound:
            if text:
                self.say(f"SSH unavailable: this image has no {KEYS_DIR} directory (no sshd)")
            return False
        if text:
            command = (ssh_command(self.user.name, self.name or "", self.ssh_gateway_host,
                                   self.ssh_gateway_port, login)
                       if self.ssh_gateway_host else "ask the hub admin for the SSH gateway address")
            self.say(f"SSH keys delivered; connect with: {command}")
        return True  # the keys file exists: keys added later reach it live (keys/live.py)

    async def start_object(self):
        if self._created_here:  # a container restarted (remove=False) has its files and was checked then
            running = (await self.docker_io("inspect_container", self.container_id)).get("Image")
            if running != self._admitted_image:  # the content created is the content admitted, or nothing runs
                raise SpawnRefused(
                    f"The container was created from {running}, not from the admitted image "
                    f"{self._admitted_image}, so it was removed; try again.", reason="image-changed")
            await self.deliver_conda_guard(self.container_id)
        delivered = self._ssh_authorized_keys is not None and await self.deliver_ssh_keys()
        await super().start_object()
        self.ssh_host = ""
        if delivered:
            info = await self.docker("inspect_container", self.container_id)
            networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
            self.ssh_host = (networks.get(self.network_name) or {}).get("IPAddress") or ""

    async def remove_object(self):
        object_id = self.object_id
        await super().remove_object()
        await self._gone(object_id)
        if self.read_only_root and self.ssh_key_store().configured():
            await self.key_delivery().remove_volume(self.keys_volume(), self.log)

    async def _gone(self, object_id, timeout=30.0):
        """Wait until Docker has removed the container: with ``auto_remove`` Docker removes it itself
        after the stop, and DockerSpawner's own remove returns at once ("already in progress"), so
        a stop would end while the name is still taken and a quick restart would collide with it."""
        delay, waited = 0.05, 0.0
        while object_id and waited < timeout:
            try:
                await self.docker("inspect_container", object_id)
            except NotFound:
                return
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 1.0)
        self.log.warning("%s: container %s is still there %.0f s after its removal", self._log_name,
                         object_id[:12], timeout)

    # ---- stop and poll -----------------------------------------------------------------
    async def container_changes(self, container):
        """``(changes, source)``: what changed in the container's filesystem, from its overlay2 upper
        directory where the hub can read the layers (only the changes are walked), else from
        ``docker diff``, which walks the whole image on many hosts (seconds for a large image, and
        the stop waits for it)."""
        if self.admission_read_layers:
            info = await self.docker_io("inspect_container", container)
            found = await self.docker_io.run(layers.container_changes, info, self.conda_prefix)
            if found is not None:
                return found, "layers"
        return await self.docker_io("diff", container) or [], "docker diff"

    async def before_stop(self):
        """Write what changed under the conda prefix since the image to the audit log."""
        if not (self.admission_enabled and self.conda_drift_audit and self.conda_prefix and self.container_id):
            return
        container = self.container_id
        try:
            changes, source = await self.container_changes(container)
        except DockerException as e:
            self.log.info("no conda drift check for %s: %s", container[:12], e)
            return
        drift = guard.drift(changes, self.conda_prefix, self.guard_files())
        if drift["total"]:
            self.audit.write("conda.drift", **self.audit_fields(
                image=self.image, container=container[:12], prefix=self.conda_prefix, source=source, **drift))

    def after_stop(self):
        self.release_gpus("stopped")

    async def poll(self):
        """DockerSpawner's poll, plus: a stopped server frees its GPUs and an OOM death is told in words."""
        container_id = self.object_id
        status = await super().poll()
        if status is None:
            return None
        # only GPUs of a server that started: a start in progress frees its own if it fails
        self.release_gpus("container stopped" if status else "container gone", started_only=True)
        if not container_id:  # polled again after it was found gone: same answer
            return self.oom.last_message or status
        report = await self.oom.report(container_id, await self.get_object(), self.orm_spawner)
        if report is None:
            return status
        message = report.message()
        if self.oom.seen(container_id, message, self.choices().bigger(report.memory), report):
            self.log.warning("%s: out of memory: %s", self._log_name, message)
            self.audit.write("oom", **self.audit_fields(container=container_id[:12], message=message,
                                                        **report.as_audit()))
        return message

    def form_notice(self):
        return self.oom.notice or clients.reclaimer().notice(self.user.name, self.name)

    def get_state(self):
        state = super().get_state()
        if self.oom.notice:
            state["oom_notice"] = {"message": self.oom.notice}
        return state

    def load_state(self, state):
        super().load_state(state)
        notice = (state.get("oom_notice") or {}).get("message")
        if notice:
            self.oom.notice = notice
