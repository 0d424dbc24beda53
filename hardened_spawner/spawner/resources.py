"""Profiles, GPUs and out-of-memory reports for HardenedDockerSpawner: the imperative shell.

The decisions live in :mod:`.profiles` (which profile, which image, the
form), :mod:`.gpu` (which GPU ids) and :mod:`.oom` (what to tell the user);
this mixin gathers the facts (the user's groups, the identity provider's
entitlements, Docker's list of running containers and their labels) and
applies the decisions.

One GPU allocator serves every spawner of a hub process. Before its first
allocation it is filled from the labels of the GPU containers Docker runs,
so a restarted hub never hands out a GPU a running container holds; when a
request finds too few free GPUs it asks Docker again, so a container
removed behind the hub's back frees its GPU at once.
"""

import asyncio
import dataclasses
import datetime
import subprocess
import time

from docker.errors import APIError
from tornado import web
from traitlets import Dict, Enum, HasTraits, Int, List, Unicode, default

from ..decisions import entitlements, gpu, oom, profiles
from ..errors import SpawnRefused
from ..decisions.container import LABEL_GPUS, LABEL_MEMORY, LABEL_OWNER, LABEL_PREFIX
from ..decisions.limits import Ceilings
from ..units import parse_bytes

LABEL_PROFILE = LABEL_PREFIX + "profile"
_NO_DRIVER = "could not select device driver"
_LIMIT_TRAITS = ("mem_limit", "cpu_limit", "pids_limit", "shm_size", "mem_guarantee", "cpu_guarantee")


class _GpuPool:
    """One allocator, the task that filled it from Docker, and the running refresh."""

    def __init__(self):
        self.allocator = None
        self.ready = None
        self.refreshing = None


def _failed(task):
    return task is None or (task.done() and (task.cancelled() or task.exception() is not None))


class ResourcesMixin(HasTraits):
    """Traits and lifecycle hooks for profiles, GPUs and OOM reports; mixed into HardenedDockerSpawner."""

    profiles = List(
        Dict(), config=True,
        help="""Resource profiles users choose from, as a list of dicts.

        Keys: ``slug`` (required; lower-case letters, digits, '-'), ``display_name``,
        ``description``, ``mem_limit``, ``mem_guarantee``, ``cpu_limit``,
        ``cpu_guarantee``, ``pids_limit``, ``shm_size``, ``gpus`` (how many GPUs,
        allocated exclusively), ``images`` (names in ``allowed_images`` the profile
        may run; empty: all of them; the first is used when the user picks none),
        ``groups`` (hub groups whose members may use it; empty: everyone) and
        ``default`` (the profile used when a user picks none). A limit a profile
        leaves out comes from the spawner's own setting (``mem_limit`` ...).
        Empty: one profile made of those settings.

        The options form lists only the profiles the user's groups allow, and the
        same check refuses other profiles with HTTP 400 when they arrive through
        the REST API or from an admin starting a server for the user.""",
    )
    gpu_ids = List(
        Unicode(), config=True,
        help="""GPUs the hub may hand out, as Docker device ids: indexes (``"0"``) or
        UUIDs (``"GPU-6f1c..."``). Empty: ask ``nvidia-smi`` on the hub's machine at
        the first GPU spawn (set them explicitly when Docker runs on another machine).""",
    )
    gpu_sharing = Int(
        1, config=True,
        help="""How many servers may share one GPU at a time. 1 (the default): each GPU
        belongs to one server until it stops. Higher values suit small inference
        workloads on large GPUs; memory on the GPU is then not isolated.""",
    )
    gpu_request_style = Enum(
        ("device-ids", "cdi"), "device-ids", config=True,
        help="""How GPUs are asked of Docker: ``device-ids`` (DeviceRequests for the
        ``nvidia`` driver with the allocated ids; needs nvidia-container-toolkit) or
        ``cdi`` (CDI device names ``nvidia.com/gpu=<id>``; Docker 25 or later with CDI
        enabled).""",
    )
    max_gpus_per_user = Int(
        0, config=True,
        help="""Most GPUs one user may hold at once across all their servers (named
        servers included). 0: no limit beyond each profile's ``gpus``.""",
    )
    gpu_busy_hint = Unicode(
        "", config=True,
        help="""A sentence added to the message a user reads when no GPU is free,
        e.g. ``"Idle servers are stopped after one hour."``.""",
    )

    _gpu_pools = {}  # one allocator per (Docker daemon, inventory, sharing) in this hub process
    _selection = None
    _granted = None
    _configured_image = None
    _oom_notice = None
    _oom_seen = None  # (container id, message) of the last OOM death found by poll

    # ---- profiles --------------------------------------------------------------
    def profile_catalog(self, raw_profiles=None):
        """``(profiles, problems)`` from ``raw_profiles`` (default: the ``profiles`` setting)
        and the limit settings; ``()`` gives the one profile the limit settings make alone."""
        cls = type(self).__name__
        try:
            ceilings = Ceilings(parse_bytes(self.max_mem_limit), self.max_cpu_limit, self.max_pids_limit)
        except ValueError as e:
            return (), [(f"{cls}.max_mem_limit", str(e))]
        defaults = {name: self._eval_if_callable(getattr(self, name)) for name in _LIMIT_TRAITS}
        return profiles.build_catalog(
            f"{cls}.profiles", self.profiles if raw_profiles is None else raw_profiles, defaults, ceilings,
            self._get_allowed_images(),
            gpu_count=len(self.gpu_ids) if self.gpu_ids else None,
        )

    def profile_problems(self):
        """Problems in the limit settings (checked as the profile they make alone) and in configured profiles."""
        problems = []
        if self.gpu_sharing < 1:
            problems.append((f"{type(self).__name__}.gpu_sharing", f"{self.gpu_sharing} must be at least 1"))
        if self.max_gpus_per_user < 0:
            problems.append((f"{type(self).__name__}.max_gpus_per_user", f"{self.max_gpus_per_user} must be 0 or more"))
        if not (callable(self.mem_limit) or callable(self.cpu_limit)):  # callables: checked at spawn
            problems += self.profile_catalog(())[1]
        if self.profiles:
            problems += [p for p in self.profile_catalog()[1] if p not in problems]
        return problems

    def _access(self, catalog, granted):
        groups = [g.name for g in getattr(self.user, "groups", None) or ()]
        if granted is None:
            return profiles.access_for(catalog, groups)
        return profiles.access_for(catalog, groups, granted.profiles, max_gpus=granted.gpus,
                                   images=granted.images or None)

    async def run_auth_state_hook(self, auth_state):
        """Keep the identity provider's entitlements (profiles, GPU quota) for option checks."""
        await super().run_auth_state_hook(auth_state)
        self._granted = entitlements.from_auth_state(auth_state)

    def select_profile(self, user_options):
        """The :class:`~.profiles.Selection` for ``user_options``; HTTP 400 when it cannot be honoured."""
        catalog, problems = self.profile_catalog()
        if problems:
            return None
        if self._configured_image is None:
            self._configured_image = self.image
        try:
            self._selection = profiles.choose(catalog, self._access(catalog, self._granted), user_options)
        except profiles.OptionsError as e:
            self.audit.write("spawn.denied", **self._audit_fields(
                decision="deny", reason="bad-options", options=user_options, reasons=[str(e)]))
            raise web.HTTPError(400, str(e)) from None
        return self._selection

    def profile_limits(self):
        """``(Limits, problems)`` of the profile the user picked; sets the image it runs."""
        catalog, problems = self.profile_catalog()
        if problems:
            return None, problems
        selection = self.select_profile(self.user_options)
        if self._oom_notice:
            self._emit(6, self._oom_notice["message"])
        if selection.image is None:
            self.image = self._configured_image
        elif not (self.user_options or {}).get("image"):
            allowed = self._get_allowed_images()
            self.image = selection.image if allowed == "*" else allowed[selection.image]
        self._emit(10, f"Profile {selection.profile.display_name}: {selection.profile.describe()}")
        return selection.profile.limits, []

    def resource_labels(self, limits):
        labels = {LABEL_MEMORY: str(limits.memory), LABEL_PROFILE: self._selection.profile.slug}
        if limits.gpus:
            labels[LABEL_GPUS] = gpu.format_label(limits.gpus)
        return labels

    def resource_facts(self):
        return {"profile": self._selection.profile.slug if self._selection else ""}

    @default("options_form")
    def _default_options_form(self):
        return lambda spawner: spawner.render_options_form()

    @default("options_from_form")
    def _default_options_from_form(self):
        return profiles.options_from_form

    async def render_options_form(self):
        """The form: only what the user's groups (and IdP entitlements) allow, limits in words."""
        catalog, problems = self.profile_catalog()
        if problems:
            return ""
        granted = entitlements.from_auth_state(await self.user.get_auth_state())
        access = self._access(catalog, granted)
        gpus_free = None
        if any(p.gpus and access.allows(p) for p in catalog):
            try:
                pool = await self._gpu_pool()
                gpus_free = (pool.allocator.free(), len(pool.allocator.gpus))
            except Exception as e:  # the form still renders; the spawn reports the failure
                self.log.warning("GPU availability unknown for the options form: %s", e)
        notice = self._oom_notice["message"] if self._oom_notice else ""
        return profiles.render_form(
            catalog, access, self._get_allowed_images(), previous=self.orm_spawner.user_options,
            notice=notice, gpus_free=gpus_free)

    # ---- GPUs --------------------------------------------------------------------
    def _docker_base_url(self):
        return self.client_kwargs.get("base_url") or self._docker_url()

    def _gpu_pool_key(self):
        return (self._docker_base_url(), tuple(self.gpu_ids), self.gpu_sharing)

    async def _gpu_pool(self):
        """This hub's allocator, filled from Docker's running containers before first use."""
        pool = self._gpu_pools.setdefault(self._gpu_pool_key(), _GpuPool())
        if _failed(pool.ready):
            pool.ready = asyncio.ensure_future(self._fill_pool(pool))
        await asyncio.shield(pool.ready)
        return pool

    async def _fill_pool(self, pool):
        ids = tuple(self.gpu_ids)
        if not ids:
            try:
                ids = await asyncio.wrap_future(self.io_executor.submit(gpu.discover))
            except (OSError, subprocess.SubprocessError, ValueError) as e:
                raise SpawnRefused(
                    f"The hub could not list its GPUs with nvidia-smi ({e}); ask the hub admin to "
                    "check the NVIDIA driver or set gpu_ids.", reason="gpu-discovery") from None
            self.log.info("GPUs found by nvidia-smi: %s", ", ".join(ids) or "none")
        pool.allocator = gpu.GpuAllocator(ids, self.gpu_sharing)
        await self._refresh_gpus(pool)

    async def _refresh_gpus(self, pool):
        """Match the allocator to Docker's running containers (one query at a time)."""
        if pool.refreshing is None or pool.refreshing.done():
            pool.refreshing = asyncio.ensure_future(self._reconcile(pool))
        await asyncio.shield(pool.refreshing)

    async def _reconcile(self, pool):
        snapshot = pool.allocator.snapshot()
        containers = await self.io_docker("containers", filters={"label": LABEL_GPUS})
        running = gpu.running_holdings(containers, LABEL_GPUS, LABEL_OWNER)
        released, recovered = pool.allocator.reconcile(running, snapshot)
        for holder, gpus in released.items():
            self.log.info("GPU %s freed: container %s no longer runs", ",".join(gpus), holder)
            self.audit.write("gpu.release", holder=holder, gpus=list(gpus), reason="container gone")
        for holder, gpus in recovered.items():
            self.log.info("GPU %s held by running container %s", ",".join(gpus), holder)
            self.audit.write("gpu.recover", holder=holder, owner=running[holder][1], gpus=list(gpus))
        for g, holders in pool.allocator.usage().items():
            if len(holders) > pool.allocator.per_gpu:
                self.log.warning("GPU %s is shared by %s, more than gpu_sharing=%s allows",
                                 g, ", ".join(holders), pool.allocator.per_gpu)

    def _try_allocate(self, pool, profile):
        return pool.allocator.allocate(
            self.container_name, profile.gpus, owner=self.user.name, owner_limit=self.max_gpus_per_user)

    async def allocate_gpus(self, limits):
        """Allocate the profile's GPUs (the last check of a spawn); ``limits`` with their ids."""
        profile = self._selection.profile
        if not profile.gpus:
            return limits
        pool = await self._gpu_pool()
        if not pool.allocator.gpus:
            raise SpawnRefused(
                f"Profile {profile.title()} needs a GPU, but this hub has none: gpu_ids is empty and "
                f"nvidia-smi found none. Pick a profile without GPUs, or ask the hub admin to set gpu_ids.",
                reason="gpu-none")
        try:
            gpus = self._try_allocate(pool, profile)
        except gpu.GpuUnavailable:
            await self._refresh_gpus(pool)  # a GPU container may have gone behind our back
            try:
                gpus = self._try_allocate(pool, profile)
            except gpu.GpuUnavailable as e:
                raise SpawnRefused(self._busy_message(e, profile), reason="gpu-busy") from None
        self._emit(35, f"Allocated GPU{'s' if len(gpus) > 1 else ''} {', '.join(gpus)} for profile {profile.display_name}")
        self.audit.write("gpu.allocate", **self._audit_fields(profile=profile.slug, gpus=list(gpus)))
        return dataclasses.replace(limits, gpus=gpus)

    def _busy_message(self, error, profile):
        catalog, _ = self.profile_catalog()
        access = self._access(catalog, self._granted)
        quota = isinstance(error, gpu.GpuQuotaExceeded)
        room = min(error.free, error.limit - error.held) if quota else error.free
        others = [p.title() for p in catalog if access.allows(p) and p.gpus <= room and p != profile]
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
        pool = self._gpu_pools.get(self._gpu_pool_key())
        allocator = pool.allocator if pool else None
        freed = allocator.release(self.container_name, confirmed_only=started_only) if allocator else ()
        if freed:
            self.log.info("%s: GPU %s freed (%s)", self._log_name, ",".join(freed), reason)
            self.audit.write("gpu.release", **self._audit_fields(gpus=list(freed), reason=reason))
        return freed

    def resources_started(self):
        """The container runs: its GPUs are now on Docker's list; the OOM notice was shown."""
        pool = self._gpu_pools.get(self._gpu_pool_key())
        if pool and pool.allocator:
            pool.allocator.confirm(self.container_name)
        self._oom_notice = self._oom_seen = None

    def resources_start_failed(self, exc):
        """Free the GPUs of a start that failed; a SpawnRefused to raise instead when Docker has no GPU runtime."""
        self.release_gpus("start failed")
        if not (isinstance(exc, APIError) and _NO_DRIVER in str(exc)):
            return None
        profile = self._selection.profile if self._selection else None
        name = f"profile {profile.title()}" if profile else "this profile"
        if self.gpu_request_style == "cdi":
            what = ("Docker on this host cannot use CDI device names (it needs Docker 25 or later with CDI "
                    "enabled); ask the hub admin to set gpu_request_style='device-ids' or upgrade Docker")
        else:
            what = ("this host has no NVIDIA container runtime: Docker could not select the 'nvidia' device "
                    "driver. Ask the hub admin to install nvidia-container-toolkit and restart Docker")
        self.audit.write("spawn.denied", **self._audit_fields(decision="deny", reason="no-gpu-runtime",
                                                             reasons=[str(exc)]))
        return SpawnRefused(f"Your server with {name} could not start: {what}. The GPU was released; "
                            "a profile without GPUs still works.", reason="no-gpu-runtime")

    # ---- poll: containers that stopped, and why ---------------------------------------
    async def poll(self):
        """DockerSpawner's poll, plus: a stopped server frees its GPUs and an OOM death is told in words."""
        container_id = self.object_id
        status = await super().poll()
        if status is None:
            return None
        # only GPUs of a server that started: a start in progress frees its own if it fails
        self.release_gpus("container stopped" if status else "container gone", started_only=True)
        if not container_id:  # polled again after it was found gone: same answer
            return self._oom_seen[1] if self._oom_seen else status
        report = await self._oom_report(container_id)
        if report is None:
            return status
        message = report.message()
        if not self._oom_seen or self._oom_seen[0] != container_id:
            self._oom_seen = (container_id, message)
            self._oom_notice = {"message": oom.next_visit_notice(report, self._bigger_profiles(report.memory))}
            self.log.warning("%s: out of memory: %s", self._log_name, message)
            self.audit.write("oom", **self._audit_fields(container=container_id[:12], message=message,
                                                        **report.as_audit()))
        return message

    async def _oom_report(self, container_id):
        container = await self.get_object()
        if container is not None:
            return oom.from_inspect(container, LABEL_MEMORY)
        # Docker removed the container itself (auto_remove): its events remain for a while
        started = getattr(self.orm_spawner, "started", None)
        since = started.replace(tzinfo=datetime.timezone.utc).timestamp() if started else time.time() - 86400
        try:
            stream = await self.io_docker(
                "events", since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                filters={"container": container_id, "event": ["oom", "die"]})
            events = await asyncio.wrap_future(self.io_executor.submit(list, stream))
        except APIError as e:
            self.log.warning("%s: could not read Docker events: %s", self._log_name, e)
            return None
        return oom.from_events(events, LABEL_MEMORY)

    def _bigger_profiles(self, memory):
        catalog, problems = self.profile_catalog()
        if problems or not memory:
            return ()
        access = self._access(catalog, self._granted)
        return tuple(p.title() for p in catalog if access.allows(p) and p.limits.memory > memory)

    # ---- state: the OOM notice survives a stop and a hub restart ---------------------------
    def get_state(self):
        state = super().get_state()
        if self._oom_notice:
            state["oom_notice"] = self._oom_notice
        return state

    def load_state(self, state):
        super().load_state(state)
        self._oom_notice = state.get("oom_notice") or self._oom_notice
