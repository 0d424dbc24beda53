"""HardenedDockerSpawner: the hardened pipeline on one Docker host.

The backend hooks of :mod:`.base`, for plain containers:

- GPUs come from the hub's exclusive pool (:mod:`.gpus`) as DeviceRequests;
  a daemon without the NVIDIA runtime is told in words, and the GPU freed;
- keys are written into the created container (:mod:`.key_delivery`), and
  the conda/pip policy files beside them; the conda prefix's drift is
  audited at stop;
- a running server's host certificate is renewed before it ends
  (:mod:`.host_renewal`);
- a server that died of OOM is reported in words in the hub log, the audit
  log and at the next visit (:mod:`.oom_watch`).
"""

import asyncio
import dataclasses

from traitlets import Bool, default

from docker.errors import APIError, DockerException, NotFound

from ..admission import guard, layers
from ..decisions import gpu, invariants
from ..decisions.plan import NotHardened
from ..errors import SpawnRefused
from ..keys.delivery import KEYS_DIR
from ..keys.live import LiveDeliveryError
from ..keys.targets import ssh_command
from . import clients
from .base import SpawnPipeline
from .refusals import not_hardened
from .gpus import GpuDiscoveryFailed, GpuPool
from .conda_policy import CondaPolicy, policy_volume_name, remove_server_volumes
from .home_watch import WatchedHome
from .homes import Homes, home_volume
from .host_renewal import HostCertRenewal
from .key_delivery import KeyDelivery
from .networks import NetworkSettings, ServerNetwork, default_network_name
from .oom_watch import OomWatch

_NO_DRIVER = "could not select device driver"


class HardenedDockerSpawner(WatchedHome, NetworkSettings, SpawnPipeline):
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
        Docker's default ``bridge``). Each hub process proves the network isolates before its first
        spawn there (``isolation_probe``). With the hub in a container, use ``network_per_user``.
        False: use ``network_name`` as it is.""",
    )

    _home_plan = None  # the plan whose home quota_home prepared
    _oom = None  # OomWatch: the notice shown at the next visit survives stops and hub restarts
    _host_renewal = None

    @default("network_name")
    def _default_network_name(self):
        return default_network_name(self)

    def isolated_network(self):
        return self.network_name if self.isolate_containers else None

    @property
    def oom(self):
        if self._oom is None:
            self._oom = OomWatch(self.docker_io, self.log)
        return self._oom

    @property
    def host_renewal(self):
        self._host_renewal = self._host_renewal or HostCertRenewal()
        return self._host_renewal

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

    async def start_failed(self, error, plan):
        """Free the GPUs of a start that failed; a SpawnRefused instead when Docker has no GPU runtime."""
        self.release_gpus("start failed")
        if not (isinstance(error, APIError) and _NO_DRIVER in str(error)):
            return None
        name = f"profile {plan.profile.title()}" if plan else "this profile"
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
        clients.home_watcher().started(self)

    # ---- create and start --------------------------------------------------------------
    def keys_volume(self):
        return f"{self.object_name}-ssh-keys"

    def policy_volume(self):
        return policy_volume_name(self.object_name)

    def keys_mount(self, keys):
        """With a read-only root, keys live in a per-server volume mounted read-only."""
        if self.read_only_root and keys is not None:
            return self.keys_volume(), KEYS_DIR
        return None

    def recorded_problems(self, obj, plan):
        """Invariants the container as Docker recorded it (``docker inspect``) breaks."""
        return invariants.of_container(obj, plan.expected)

    async def quota_home(self, plan):
        """The home volume of a profile with ``home_quota``, ready before the container uses it."""
        limits = plan.profile.limits
        if limits.home and self._home_plan is not plan:  # once per start (create_from, then start_from)
            self._home_plan = plan
            volume = home_volume(self.volume_binds, self.notebook_dir, f"{self.setting_prefix}volumes")
            if self.home_quota_mode == "watch":  # a plain volume, measured (home_watch.py)
                await self.watch_home(volume, limits.home)
                return
            await Homes(self.docker_io, self.home_quota_dir, self.log).ensure(
                volume, limits.home, limits.home_files, plan.user, self.say)

    async def delete_forever(self):
        """The user (or a named server whose volume is its own) is deleted in the hub: a home with a quota
        goes with its image. A stop never deletes it; deleting a named server that shares the user's home
        keeps it."""
        own = not self.name or any("{servername}" in str(source) for source in self.volumes)
        if own and any(p.limits.home for p in self.profile_catalog()[0]):
            volume = home_volume(self.volume_binds, self.notebook_dir, f"{self.setting_prefix}volumes")
            await Homes(self.docker_io, self.home_quota_dir, self.log).remove(volume)

    async def create_from(self, plan):
        """Create the planned container; returns Docker's answer (as DockerSpawner's ``create_object``)."""
        await self.quota_home(plan)
        await ServerNetwork(self.docker_io, clients.flights(), self.audit).prepare(
            self, plan.create_kwargs["host_config"]["network_mode"], plan.network is not None, plan.image_id)
        kwargs = dict(plan.create_kwargs)
        kwargs["host_config"] = self.client.create_host_config(**kwargs["host_config"])
        await CondaPolicy(self.docker_io, self).prepare_volume(plan)  # a read-only root's, before the create
        try:
            return await self.docker("create_container", **kwargs)
        except BaseException:
            await CondaPolicy(self.docker_io, self).remove_volume(plan)
            raise

    async def prepare_created(self, plan):
        """Before the created container first starts: what Docker recorded must keep every invariant
        (else it is removed and the spawn refused), then the policy files go in."""
        recorded = await self.docker_io("inspect_container", self.container_id)
        violations = invariants.of_container(recorded, plan.expected)
        if any(v.invariant == "container.image" for v in violations):  # the tag moved between check and create
            raise SpawnRefused(
                f"The container was created from {recorded.get('Image')}, not from the admitted image "
                f"{plan.image_id}, so it was removed; try again.", reason="image-changed")
        if violations:
            raise not_hardened(NotHardened(violations), "the container Docker created")
        await CondaPolicy(self.docker_io, self).deliver(self.container_id, plan)

    async def _remove(self, container_id):
        try:
            await self.docker("remove_container", container_id, force=True, v=True)
        except APIError as e:
            self.log.warning("could not remove container %s: %s", container_id[:12], e)

    async def discard(self):
        if self.object_id:
            await self._remove(self.object_id)
            self.object_id = ""
        await remove_server_volumes(self)  # a failed start leaves no volume either

    async def deliver_ssh_keys(self, plan):
        """Write the accepted keys (or an empty file) into the container; True when the file is there."""
        if plan.login is None:
            if plan.keys:
                self.say(f"SSH unavailable: the image has no account for {plan.user}")
            return False
        volume = self.keys_volume() if plan.keys_mount else ""
        try:
            await KeyDelivery(self.docker_io).write(
                self.container_id, plan.image_id, plan.login, plan.keys, volume=volume, owner=self.user.name,
                host_key=plan.host_key, host_owner=tuple(int(n) for n in plan.user.split(":")))
        except LiveDeliveryError as e:
            if plan.keys:
                self.say(f"SSH unavailable: {e}")
            return False
        if plan.keys:
            command = (ssh_command(self.user.name, self.name or "", self.ssh_gateway_host,
                                   self.ssh_gateway_port, plan.login)
                       if self.ssh_gateway_host else "ask the hub admin for the SSH gateway address")
            self.say(f"SSH keys delivered; connect with: {command}")
        return True  # the keys file exists: keys added later reach it live (keys/live.py)

    async def start_from(self, plan):
        """Deliver the keys and start; True when the gateway can reach this server's sshd."""
        delivered = plan.keys is not None and await self.deliver_ssh_keys(plan)
        await self.quota_home(plan)  # a restarted container's home: attached again after a reboot
        await self.start_object()
        self.host_renewal.started(plan.host_key if delivered else None)
        return delivered

    async def record_ssh(self, plan, reachable):
        self.ssh_host = ""
        if reachable:
            info = await self.docker("inspect_container", self.container_id)
            networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
            self.ssh_host = (networks.get(self.network_name) or {}).get("IPAddress") or ""

    async def remove_object(self):
        object_id = self.object_id
        await super().remove_object()
        await self._gone(object_id)
        await ServerNetwork(self.docker_io, clients.flights(), self.audit).release(self)
        await remove_server_volumes(self)

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
        """DockerSpawner's poll, plus: a running server's host certificate is renewed when due, a stopped
        server frees its GPUs and an OOM death is told in words."""
        container_id = self.object_id
        status = await super().poll()
        if status is None:
            if self.pending not in ("spawn", "stop"):  # a start in progress delivers its own certificate
                await self.host_renewal.poll(self)
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
        return (self.oom.notice or clients.reclaimer().notice(self.user.name, self.name)
                or clients.home_watcher().notice(self.user.name, self.name))

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
