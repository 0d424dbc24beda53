"""The one spawn pipeline of both backends.

All checks run in :meth:`SpawnPipeline.start` before anything is created, on
every start: with ``remove=False`` an existing container is restarted
without being created, so checks placed at creation would be skipped. The
phases (:mod:`.phases`) run in order, each with its progress:

config -> profile -> image -> admission -> keys -> gpus -> plan -> stale -> start

Every decision is made by pure code (:mod:`..decisions`, :mod:`..admission`);
the pipeline gathers facts through its collaborators and the result of the
checks is one :class:`~..decisions.plan.SpawnPlan`, which is handed to the
backend (:mod:`.docker`, :mod:`.swarm`) explicitly; a backend reads only the
plan. Its hooks:

``reserve_gpus(profile, limits)`` and ``gpu_environment(profile, limits)``
(phases gpus, plan), ``isolated_network()``, ``keys_mount(keys)`` and ``policy_volume()`` (plan),
``create_from(plan)``, ``prepare_created(plan)``, ``recorded_problems(obj, plan)``,
``start_from(plan)`` and ``record_ssh(plan, reachable)`` (start),
``discard()``, ``start_failed(error, plan)``, ``started()``,
``before_stop()``, ``after_stop()`` and ``gpus_free()`` (the options form).
"""

import asyncio
import inspect

from docker.errors import DockerException
from traitlets import Any, Unicode, default

from .. import __version__
from ..admission import facts as admission_facts
from ..admission.engine import reference_decision
from ..admission.service import AdmissionService
from ..decisions.container import LABEL_POLICY, ContainerSpec
from ..decisions.plan import SpawnInputs, plan_spawn
from ..errors import SpawnRefused, UnsafeConfig, failure_reason
from ..keys.targets import CONTAINER_SSH_PORT
from . import clients, ready
from .disk import DiskGuard
from .images import ImageResolver
from .keys import keys_for_spawn
from .options import UserOptions
from .phases import Progress
from .reclaim import LeaseState
from .refusals import deny, refusal_for


class SpawnPipeline(DiskGuard, LeaseState, UserOptions):
    """HardenedSpawner's settings and user options plus the spawn pipeline; subclassed by each backend."""

    docker_io = Any(help="The :class:`.clients.DockerIO` for slow Docker calls (shared per daemon).")
    ssh_host = Unicode(
        "",
        help="""Internal address of this server's sshd (port 2222), kept in the server's
        state for the SSH gateway. Set by the spawner, not by configuration.""",
    )

    _progress = None  # the running start's phases: JupyterHub reads them through progress()

    @default("docker_io")
    def _default_docker_io(self):
        return clients.docker_io(self.client_kwargs)

    # ---- progress --------------------------------------------------------------------
    def say(self, message):
        self._progress.say(message)

    async def progress(self):
        """Yield the spawn's phase messages as they happen (JupyterHub stops us when done)."""
        sent = 0
        while True:
            events = self._progress.events if self._progress else []
            while sent < len(events):
                yield events[sent]
                sent += 1
            await asyncio.sleep(0.25)

    # ---- phase: image ------------------------------------------------------------------
    def image_resolver(self):
        return ImageResolver(self.docker_io, self.pull_policy, self.log)

    async def pull_image(self, image):
        """DockerSpawner's API; the pipeline resolves (and pulls) the image in its image phase."""
        await self.image_resolver().pull(image)

    # ---- phase: admission --------------------------------------------------------------
    def admission_service(self, policy):
        inputs, decisions = clients.admission_caches(self.admission_cache_size)
        return AdmissionService(policy, self.docker_io.client, clients.executor("admission"), inputs, decisions,
                                read_layers=self.admission_read_layers)

    def admit_reference(self, image):
        """Refuse the spawn (SpawnRefused) when the reference alone breaks the admission policy (a
        registry the allowlist does not name, a reference that is not an image name): before any pull,
        so a user choosing images through ``allowed_images = "*"`` cannot make the daemon pull from
        anywhere. Audited."""
        if not self.admission_enabled:
            return
        policy = self.admission_policy()
        decision = reference_decision(policy, image)
        if not decision.admitted:
            self.audit.write("admission", **self.audit_fields(
                image=image, decision="deny", policy=policy.digest(), stage="reference",
                findings=[f.as_dict() for f in decision.findings]))
            raise SpawnRefused(f"The image {image} was refused by this hub's image policy. Nothing was pulled.",
                               reason="image-denied", findings=decision.findings)

    async def admit_image(self, image, image_info):
        """Refuse the spawn (SpawnRefused) unless the admission policy admits ``image``. Audited.

        Returns ``(decision, (passwd, group))``: the decision (None when admission is off) and the
        image's account files, read by admission (or alone when it is off)."""
        policy = self.admission_policy()
        service = self.admission_service(policy)
        try:
            if not self.admission_enabled:
                return None, await service.accounts(image_info)
            verdict = await service.decide(image, image_info)
        except (admission_facts.FactsError, DockerException) as e:
            self.audit.write("admission", **self.audit_fields(
                image=image, digest=image_info["Id"], decision="error", reasons=[str(e)]))
            raise SpawnRefused(
                f"The image {image} could not be checked ({e}), so it was not started. "
                "Try again; if it persists, tell the hub admin.", reason="admission-failed") from None
        decision = verdict.decision
        self.audit.write("admission", **self.audit_fields(
            image=image, digest=decision.digest, image_id=image_info["Id"],
            decision="admit" if decision.admitted else "deny", cache=verdict.how, facts=verdict.facts,
            policy=policy.digest(), seconds=verdict.seconds, signature=decision.signature, sbom=decision.sbom,
            provenance=decision.provenance, findings=[f.as_dict() for f in decision.findings],
            vsa=self.summary_issuer().issue(policy, image, decision, self.hub.base_url)))
        if not decision.admitted:
            raise SpawnRefused(f"The image {image} was refused by this hub's image policy.",
                               reason="image-denied", findings=decision.findings)
        if decision.warnings:
            self.say("Image policy warnings: " + "; ".join(f"[{f.rule}] {f.message}" for f in decision.warnings))
        return decision, verdict.accounts

    # ---- phase: keys -------------------------------------------------------------------
    async def fetch_ssh_keys(self):
        """The authorized_keys text to deliver (None: none); refuse if the store fails and SSH is required."""
        return await keys_for_spawn(self.key_source(), self.user.name, self.name or "", self.ssh_required,
                                    self.audit, self.say)

    # ---- the checks --------------------------------------------------------------------
    async def _evaluated(self, value):
        value = self._eval_if_callable(value)
        if inspect.isawaitable(value):
            value = await value
        return self._render_templates(value)

    async def _prepare(self, trace):
        """Every check, in phase order, before anything exists. Returns the :class:`SpawnPlan`.

        ``trace`` receives the image once it is chosen (the refusal's audit line names it).
        """
        enter = self._progress.enter
        enter("config")
        self.say("Checking the server configuration")
        extra_host_config = await self._evaluated(self.extra_host_config)
        extra_create_kwargs = await self._evaluated(self.extra_create_kwargs)
        daemon = await self.daemon_facts()
        catalog, catalog_problems = self.profile_catalog()
        problems = self.config_problems(extra_host_config, extra_create_kwargs, rendered=True, daemon=daemon)
        problems += [p for p in catalog_problems if p not in problems]
        if problems:
            raise UnsafeConfig(problems)

        enter("profile")
        selection = self.select(catalog, self.user_options)
        trace["image"] = self.image = selection.image  # as DockerSpawner: the server's image is the one chosen
        await self.check_free_disk(daemon)  # min_free_disk, before any pull
        if notice := self.form_notice():
            self.say(notice)
        profile = selection.profile
        self.say(f"Profile {profile.display_name}: {profile.describe()}")
        enter("image")
        self.say(f"Checking image {selection.name or selection.image}")
        self.admit_reference(selection.image)
        image_info = await self.image_resolver().resolve(selection.image)
        enter("admission")
        decision, accounts = await self.admit_image(selection.image, image_info)
        enter("keys")
        keys = await self.fetch_ssh_keys()
        enter("gpus")
        limits = await self.reserve_gpus(profile, profile.limits)  # last: a refusal above never holds a GPU
        self.record_lease(profile, limits)

        enter("plan")
        self.say(f"Preparing a container with {limits.describe()}")
        hardening = self.hardening()
        plan = plan_spawn(SpawnInputs(
            user=self.user.name, server=self.name or "", selection=selection, image_info=image_info,
            create_image=self.create_image_ref(selection.image, image_info), accounts=accounts,
            policy_digest=self.admission_policy().digest() if self.admission_enabled else "",
            spec=await self._container_spec(selection.image, extra_create_kwargs, extra_host_config),
            limits=limits, hardening=hardening, package_version=__version__, daemon=daemon,
            network=self.isolated_network(), gpu_env=self.gpu_environment(profile, limits), keys=keys,
            keys_mount=self.keys_mount(keys), host_key=self.ssh_host_key(keys), guard_files=self.guard_files(),
            extra_forbidden=tuple(self.extra_forbidden_host_paths), sbom=decision.sbom if decision else "",
            policy_volume=self.policy_volume()))
        if plan.user_replaced:
            self.log.warning("image %s runs as root; starting it as %s instead", selection.image, plan.user)
        return plan

    async def _container_spec(self, image, extra_create_kwargs, extra_host_config):
        return ContainerSpec(
            image=image, name=self.container_name, command=await self.get_command(),
            environment=self.get_env(), port=self.port, volume_binds=self.volume_binds,
            volume_mount_points=self.volume_mount_points, mounts=self.mount_binds, links=self.links,
            network_name=self.network_name, use_internal_ip=self.use_internal_ip, host_ip=self.host_ip,
            remove=self.remove, extra_create_kwargs=extra_create_kwargs, extra_host_config=extra_host_config,
        )

    async def checked_plan(self):
        """Run every check (:meth:`_prepare`); a refusal is audited and raised in words for the user."""
        if self._progress is None:
            self._progress = Progress(self.log, self._log_name)
        trace = {"image": self.image}
        try:
            return await self._prepare(trace)
        except Exception as e:
            refusal = refusal_for(e, trace["image"], clients.docker_url(self.client_kwargs))
            if refusal is None:
                raise
            deny(self, refusal, image=trace["image"])
            if refusal is e:
                raise
            raise refusal from None

    # ---- start -------------------------------------------------------------------------
    async def create_object(self):
        """DockerSpawner's API, called on its own: the same checks first, then the backend's create.
        What Docker recorded is verified, and policy files delivered, by :meth:`start` before the
        container first starts."""
        return await self.create_from(await self.checked_plan())

    async def start(self):
        """Check, then create (or restart) and start; a start that fails frees what it reserved."""
        self._progress = Progress(self.log, self._log_name)
        plan = None
        try:
            plan = await self.checked_plan()
            ip_port = await self._start(plan)
        except BaseException as e:
            self.gpu_lease = None
            refused = await self.start_failed(e, plan) or (e if isinstance(e, SpawnRefused) else None)
            if refused is None:
                raise
            deny(self, refused, image=plan.facts["image"] if plan else self.image)
            if refused is e:
                raise
            raise refused from None
        self.started()
        clients.reclaimer().started(self)
        return ip_port

    async def _start(self, plan):
        self._progress.enter("stale")
        existing = await self._reusable_object(plan)
        self._progress.enter("start")
        self.say("Starting the container")
        obj = None
        try:
            obj = await self.create_from(plan) if existing is None else existing
            self.object_id = obj[self.object_id_key]
            if existing is None:
                await self.prepare_created(plan)
            else:
                self._reuse_token(obj)
            reachable = await self.start_from(plan)
            if self.post_start_cmd:
                await self.post_start_exec()
            ip_port = await self.get_ip_and_port()
            await self.record_ssh(plan, reachable)
        except BaseException as e:
            if existing is None and obj is not None:  # what this start created goes
                await self.discard()
            if not isinstance(e, SpawnRefused):  # a refusal is audited as spawn.denied by start()
                self.audit.write("spawn.failed", **self.audit_fields(
                    **plan.facts, decision="error", reasons=[failure_reason(e, self.start_timeout)]))
            raise
        self._progress.enter("wait")
        self.say("Waiting for the server to answer")
        if self.ready_wait > 0:
            await ready.listening(*ip_port, self.ready_wait, self.poll)
        self._progress.finish()
        self.audit.write("spawn", **self.audit_fields(**plan.facts, decision="admit", reasons=[],
                                                      container=self.container_id[:12],
                                                      phases=self._progress.timings))
        return ip_port

    def _reuse_token(self, obj):
        """A restarted container keeps the API token it was created with (as DockerSpawner does)."""
        for line in (obj.get("Config") or {}).get("Env") or ():
            if line.startswith(("JPY_API_TOKEN=", "JUPYTERHUB_API_TOKEN=")):
                self.api_token = line.split("=", 1)[1]
                break

    async def _reusable_object(self, plan):
        """The stopped container to restart (``remove=False``), or None to create one.

        A leftover with ``remove=True``, and a container made under another policy, from
        other content, or whose recorded settings break an invariant, is removed, never restarted.
        """
        existing = await self.get_object()
        if not existing:
            return None
        labels = (existing.get("Config") or {}).get("Labels") or {}
        if self.remove:
            self.log.warning("Removing %s %s that should have been cleaned up", self.object_type, self.object_name)
        elif labels.get(LABEL_POLICY) != plan.policy_version or existing.get("Image") != plan.image_id:
            self.log.warning("Container %s was created under policy %s from %s, not %s from %s: recreating it",
                             self.container_name, labels.get(LABEL_POLICY), existing.get("Image"),
                             plan.policy_version, plan.image_id)
            self.say("Recreating the container under the current policy")
        else:
            problems = self.recorded_problems(existing, plan)
            if not problems:
                return existing
            self.log.warning("Container %s breaks %s: recreating it", self.container_name,
                             "; ".join(v.message for v in problems))
        self.object_id = existing[self.object_id_key]
        await self.remove_object()
        return None

    async def stop(self, now=False):
        container = self.container_id[:12]
        await self.before_stop()
        await super().stop(now=now)
        self.after_stop()
        self.audit.write("stop", **self.audit_fields(image=self.image, container=container))

    # ---- default hooks -----------------------------------------------------------------
    def create_image_ref(self, image, image_info):
        """What the container is created from: the admitted image's Id, never the tag (which can move)."""
        return image_info["Id"]

    def keys_mount(self, keys):
        return None

    def recorded_problems(self, obj, plan):
        return ()

    async def prepare_created(self, plan):
        pass

    def gpu_environment(self, profile, limits):
        """Environment that decides which GPUs the NVIDIA runtime exposes: the leased ones, or none.

        CUDA base images set ``NVIDIA_VISIBLE_DEVICES=all``: on a host whose default
        runtime is nvidia, that would hand every GPU (leased ones included) to a CPU server.
        """
        return {"NVIDIA_VISIBLE_DEVICES": ",".join(limits.gpus) or "void"}

    async def start_failed(self, error, plan):
        return None

    def started(self):
        pass

    async def before_stop(self):
        pass

    def after_stop(self):
        pass

    async def discard(self):
        pass

    async def record_ssh(self, plan, reachable):
        pass

    # ---- state for the SSH gateway -----------------------------------------------------
    def get_state(self):
        state = super().get_state()
        if self.ssh_host:
            state["ssh_host"] = self.ssh_host
            state["ssh_port"] = self.ssh_port()
        return state

    def ssh_port(self):
        return CONTAINER_SSH_PORT

    def load_state(self, state):
        super().load_state(state)
        self.ssh_host = state.get("ssh_host", "")
        if self.gpu_lease:  # a server that holds GPUs, found by a hub that (re)started
            clients.reclaimer().watch(self)

    def clear_state(self):
        super().clear_state()
        self.ssh_host = ""

    # ---- keys from the identity provider (issue 14) -------------------------------------
    async def run_auth_state_hook(self, auth_state):
        """Hand the user's auth_state to the key store before the start (IdPKeyStore reads a claim)."""
        await super().run_auth_state_hook(auth_state)
        if self.ssh_key_store().configured():
            self.ssh_key_store().use_auth_state(self.user.name, auth_state)
