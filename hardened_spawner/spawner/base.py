"""The one spawn pipeline of both backends.

All checks run in :meth:`SpawnPipeline.start` before anything is created, on
every start: with ``remove=False`` DockerSpawner restarts an existing
container without calling ``create_object``, so checks placed there would be
skipped. The phases (:mod:`.phases`) run in order, each with its progress:

config -> profile -> image -> admission -> keys -> gpus -> plan -> stale -> start

Every decision is made by pure code (:mod:`..decisions`, :mod:`..admission`);
the pipeline gathers facts through its collaborators and applies decisions.
A backend (:mod:`.docker`, :mod:`.swarm`) implements the hooks:

``reserve_gpus(profile, limits)`` (phase gpus), ``keys_mount()`` (plan),
``create_object``/``start_object``/``remove_object`` (DockerSpawner's, phase
start), ``remove_if_created_here()``, ``start_failed(exc)``, ``started()``,
``before_stop()``, ``after_stop()`` and ``gpus_free()`` (the options form).
"""

import asyncio
import inspect

from docker.errors import DockerException
from requests.exceptions import RequestException
from tornado import web
from traitlets import Any, Unicode, default

from .. import __version__
from ..admission import facts as admission_facts
from ..admission.service import AdmissionService
from ..decisions.container import LABEL_POLICY, ContainerSpec
from ..decisions.plan import SpawnInputs, plan_spawn
from ..decisions.reference import BadReference, parse
from ..decisions.users import UnknownUser
from ..errors import SpawnRefused, UnsafeConfig
from ..keys.targets import CONTAINER_SSH_PORT
from . import clients
from .images import ImageResolver
from .keys import KeySource, keys_for_spawn
from .options import UserOptions
from .phases import Progress
from .reclaim import LeaseState
from .refusals import deny


class SpawnPipeline(LeaseState, UserOptions):
    """HardenedSpawner's settings and user options plus the spawn pipeline; subclassed by each backend."""

    docker_io = Any(help="The :class:`.clients.DockerIO` for slow Docker calls (shared per daemon).")
    ssh_host = Unicode(
        "",
        help="""Internal address of this server's sshd (port 2222), kept in the server's
        state for the SSH gateway. Set by the spawner, not by configuration.""",
    )

    _plan = None              # the checked plan, until create_object uses it
    _progress = None
    _image_checked = None
    _ssh_authorized_keys = None  # None: no keys to deliver; "": deliver an empty file
    _created_here = False
    _admitted_image = None    # the image Id admission read, for the check before start

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
        """DockerSpawner calls this in start(): the image was pulled and inspected by this start's checks."""
        if image != self._image_checked:
            await self.image_resolver().pull(image)

    async def _resolve_image(self):
        """The image to run, checked and present: ``docker inspect`` of it."""
        self._check_image_option(self.user_options)
        image_option = (self.user_options or {}).get("image")
        if image_option:
            self.image = await self.check_allowed(image_option)
        try:
            parse(self.image)
        except BadReference as e:
            raise SpawnRefused(f"The configured image cannot be used: {e}", reason="bad-reference") from None
        self._image_checked = None
        info = await self.image_resolver().resolve(self.image)
        self._image_checked = self.image
        return info

    # ---- phase: admission --------------------------------------------------------------
    def admission_service(self, policy):
        inputs, decisions = clients.admission_caches(self.admission_cache_size)
        return AdmissionService(policy, self.docker_io.client, clients.executor("admission"), inputs, decisions,
                                read_layers=self.admission_read_layers)

    async def admit_image(self, image_info):
        """Refuse the spawn (SpawnRefused) unless the admission policy admits the image. Audited.

        Returns ``(decision, (passwd, group))``: the decision (None when admission is off) and the
        image's account files, read by admission (or alone when it is off).
        """
        policy = self.admission_policy()
        service = self.admission_service(policy)
        try:
            if not self.admission_enabled:
                return None, await service.accounts(image_info)
            verdict = await service.decide(self.image, image_info)
        except (admission_facts.FactsError, DockerException) as e:
            self.audit.write("admission", **self.audit_fields(
                image=self.image, digest=image_info["Id"], decision="error", reasons=[str(e)]))
            raise SpawnRefused(
                f"The image {self.image} could not be checked ({e}), so it was not started. "
                "Try again; if it persists, tell the hub admin.", reason="admission-failed") from None
        decision = verdict.decision
        self.audit.write("admission", **self.audit_fields(
            image=self.image, digest=decision.digest, image_id=image_info["Id"],
            decision="admit" if decision.admitted else "deny", cache=verdict.how, facts=verdict.facts,
            policy=policy.digest(), seconds=verdict.seconds, signature=decision.signature, sbom=decision.sbom,
            findings=[f.as_dict() for f in decision.findings]))
        if not decision.admitted:
            raise SpawnRefused(f"The image {self.image} was refused by this hub's image policy.",
                               reason="image-denied", findings=decision.findings)
        if decision.warnings:
            self.say("Image policy warnings: " + "; ".join(f"[{f.rule}] {f.message}" for f in decision.warnings))
        return decision, verdict.accounts

    # ---- phase: keys -------------------------------------------------------------------
    def key_source(self):
        return KeySource(self.ssh_key_store(), self.ssh_key_policy(), self.ssh_store_timeout, clients.executor("keys"))

    async def fetch_ssh_keys(self):
        """The authorized_keys text to deliver (None: none); refuse if the store fails and SSH is required."""
        return await keys_for_spawn(self.key_source(), self.user.name, self.name or "", self.ssh_required,
                                    self.audit, self.say)

    # ---- the pipeline ------------------------------------------------------------------
    async def _evaluated(self, value):
        value = self._eval_if_callable(value)
        if inspect.isawaitable(value):
            value = await value
        return self._render_templates(value)

    async def _prepare(self):
        """Every check, in phase order, before anything exists. Returns the :class:`SpawnPlan`."""
        enter = self._progress.enter
        enter("config")
        self.say("Checking the server configuration")
        extra_host_config = await self._evaluated(self.extra_host_config)
        extra_create_kwargs = await self._evaluated(self.extra_create_kwargs)
        problems = self.config_problems(extra_host_config, extra_create_kwargs, rendered=True)
        problems += [p for p in self.profile_catalog()[1] if p not in problems]
        if problems:
            raise UnsafeConfig(problems)

        enter("profile")
        profile = self._choose_profile()
        enter("image")
        self.say(f"Checking image {self.user_options.get('image') or self.image}")
        image_info = await self._resolve_image()
        enter("admission")
        decision, accounts = await self.admit_image(image_info)
        enter("keys")
        self._ssh_authorized_keys = await self.fetch_ssh_keys()
        enter("gpus")
        limits = await self.reserve_gpus(profile, profile.limits)  # last: a refusal above never holds a GPU
        self.record_lease(profile, limits)

        enter("plan")
        self.say(f"Preparing a container with {limits.describe()}")
        plan = plan_spawn(SpawnInputs(
            user=self.user.name, server=self.name or "", image=self.image, image_info=image_info,
            create_image=self.create_image_ref(image_info), accounts=accounts,
            policy_digest=self.admission_policy().digest() if self.admission_enabled else "",
            spec=await self._container_spec(extra_create_kwargs, extra_host_config, limits), limits=limits,
            profile=profile.slug, package_version=__version__, run_as_uid=self.run_as_uid,
            run_as_gid=self.run_as_gid, cap_add=tuple(self.cap_add), read_only_root=self.read_only_root,
            tmpfs_size=self.tmpfs_size, gpu_request_style=self.gpu_request_style, keys_mount=self.keys_mount(),
            sbom=decision.sbom if decision else "",
        ))
        if plan.user_replaced:
            self.log.warning("image %s runs as root; starting it as %s instead", self.image, plan.user)
        return plan

    def _choose_profile(self):
        """The profile of this spawn (the options were checked when they arrived); sets the image."""
        selection = self.select_profile(self.user_options)
        notice = self.form_notice()
        if notice:
            self.say(notice)
        if selection.image is None:
            self.image = self._configured_image
        elif not (self.user_options or {}).get("image"):
            allowed = self.allowed_image_names()
            self.image = selection.image if allowed == "*" else allowed[selection.image]
        self.say(f"Profile {selection.profile.display_name}: {selection.profile.describe()}")
        return selection.profile

    async def _container_spec(self, extra_create_kwargs, extra_host_config, limits):
        return ContainerSpec(
            image=self.image, name=self.container_name, command=await self.get_command(),
            environment={**self.get_env(), **self.gpu_environment(limits)}, port=self.port,
            volume_binds=self.volume_binds,
            volume_mount_points=self.volume_mount_points, mounts=self.mount_binds, links=self.links,
            network_name=self.network_name, use_internal_ip=self.use_internal_ip, host_ip=self.host_ip,
            remove=self.remove, extra_create_kwargs=extra_create_kwargs, extra_host_config=extra_host_config,
        )

    def _refusal(self, error):
        """The :class:`SpawnRefused` for a check that said no, else None (a crash)."""
        if isinstance(error, UnknownUser):
            return SpawnRefused(f"The image {self.image} cannot be started: {error}. Only the hub admin can fix "
                                "the image's USER (or extra_create_kwargs['user']).", reason="image-user-unknown")
        if isinstance(error, SpawnRefused):
            return error
        if isinstance(error, UnsafeConfig):
            return SpawnRefused(
                "The hub's configuration is unsafe, so no server was started. Only the hub admin can fix this.",
                reason="unsafe-config", findings=[
                    {"rule": setting, "severity": "high", "message": message,
                     "remediation": "Change this setting in jupyterhub_config.py "
                                    "(hardened-spawner validate-config checks the file)."}
                    for setting, message in error.problems])
        if isinstance(error, web.HTTPError) and error.status_code < 500:
            return SpawnRefused(error.log_message or str(error), reason="bad-options")
        if isinstance(error, (DockerException, RequestException)):
            return SpawnRefused(
                f"The hub cannot reach the Docker daemon ({clients.docker_url(self.client_kwargs)}): {error}. "
                "Ask the hub admin to start dockerd or fix DOCKER_HOST.", reason="docker-unreachable")
        return None

    async def checked_plan(self):
        """Run every check (:meth:`_prepare`); a refusal is audited and raised in words for the user."""
        if self._progress is None:
            self._progress = Progress(self.log, self._log_name)
        try:
            return await self._prepare()
        except Exception as e:
            refusal = self._refusal(e)
            if refusal is None:
                raise
            deny(self, refusal, image=self.image)
            if refusal is e:
                raise
            raise refusal from None

    async def plan_for_create(self):
        """The checked plan of this start; when ``create_object`` is called on its own, check now."""
        plan, self._plan = self._plan, None
        return plan if plan is not None else await self.checked_plan()

    async def start(self):
        """Check, then create and start; a start that fails frees what it reserved."""
        self._progress = Progress(self.log, self._log_name)
        try:
            ip_port = await self._start()
        except BaseException as e:
            self._plan, self.gpu_lease = None, None
            refused = await self.start_failed(e) or (e if isinstance(e, SpawnRefused) else None)
            if refused is None:
                raise
            deny(self, refused, image=self.image)
            if refused is e:
                raise
            raise refused from None
        self.started()
        clients.reclaimer().started(self)
        return ip_port

    async def _start(self):
        plan = self._plan = await self.checked_plan()
        self._progress.enter("stale")
        await self._drop_stale_container(plan)
        self._progress.enter("start")
        self.say("Starting the container")
        self._created_here = False
        try:
            ip_port = await super().start()
        except Exception as e:
            await self.remove_if_created_here()
            if not isinstance(e, SpawnRefused):  # a refusal is audited as spawn.denied by start()
                self.audit.write("spawn.failed", **self.audit_fields(**plan.facts, decision="error",
                                                                     reasons=[str(e)]))
            raise
        finally:
            self._plan = None
        self._progress.enter("wait")
        self.audit.write("spawn", **self.audit_fields(**plan.facts, decision="admit", reasons=[],
                                                      container=self.container_id[:12],
                                                      phases=self._progress.timings))
        self.say("Waiting for the server to answer")
        return ip_port

    async def _drop_stale_container(self, plan):
        """A stopped container made under another policy or from other content is recreated, never restarted."""
        if self.remove:
            return  # DockerSpawner removes any leftover container itself
        existing = await self.get_object()
        if not existing:
            return
        labels = (existing.get("Config") or {}).get("Labels") or {}
        version = plan.policy_version
        if labels.get(LABEL_POLICY) != version or existing.get("Image") != plan.facts["image_id"]:
            self.log.warning("Container %s was created under policy %s from %s, not %s from %s: recreating it",
                             self.container_name, labels.get(LABEL_POLICY), existing.get("Image"), version,
                             plan.facts["image_id"])
            self.say("Recreating the container under the current policy")
            await self.remove_object()

    async def stop(self, now=False):
        container = self.container_id[:12]
        await self.before_stop()
        await super().stop(now=now)
        self.after_stop()
        self.audit.write("stop", **self.audit_fields(image=self.image, container=container))

    # ---- default hooks -----------------------------------------------------------------
    def create_image_ref(self, image_info):
        """What the container is created from: the admitted image's Id, never the tag (which can move)."""
        return image_info["Id"]

    def keys_mount(self):
        return None

    def gpu_environment(self, limits):
        """Environment that decides which GPUs the NVIDIA runtime exposes: the leased ones, or none.

        CUDA base images set ``NVIDIA_VISIBLE_DEVICES=all``: on a host whose default
        runtime is nvidia, that would hand every GPU (leased ones included) to a CPU server.
        """
        return {"NVIDIA_VISIBLE_DEVICES": ",".join(limits.gpus) or "void"}

    async def start_failed(self, error):
        return None

    def started(self):
        pass

    async def before_stop(self):
        pass

    def after_stop(self):
        pass

    async def remove_if_created_here(self):
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
