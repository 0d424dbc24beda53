"""HardenedDockerSpawner: DockerSpawner with security defaults that cannot be undone.

The lifecycle is thin: every decision is made by pure code
(:mod:`.safety`, :mod:`.limits`, :mod:`.hostconfig`, :mod:`.admission`),
and this class gathers the facts, calls it, and talks to Docker.

All checks run in :meth:`start` before anything is created, on every start:
with ``remove=False`` DockerSpawner restarts an existing container without
calling ``create_object``, so checks placed there would be skipped.
"""

import asyncio
import inspect
from concurrent.futures import ThreadPoolExecutor

import docker
from docker.errors import APIError, DockerException, ImageNotFound
from dockerspawner import DockerSpawner
from requests.exceptions import RequestException
from tornado import web
from traitlets import Bool, Float, Int, List, Unicode, default

from .. import __version__
from ..decisions import safety
from ..decisions import reference
from .admission import AdmissionMixin
from ..audit import AuditLog
from ..errors import SpawnRefused, UnsafeConfig
from ..decisions.container import (
    LABEL_MANAGED, LABEL_OWNER, LABEL_POLICY, LABEL_SERVER, ContainerSpec, Hardening,
    build_create_kwargs, policy_version,
)
from .keys import KeysMixin
from .resources import ResourcesMixin

def image_digest(image, image_info):
    """The content digest the image is known by: the pinned or registry digest, else its id."""
    ref = reference.parse(image)
    if ref.digest:
        return ref.digest
    for repo_digest in image_info.get("RepoDigests") or ():
        name, _, digest = repo_digest.partition("@")
        if reference.parse(name).name == ref.name:
            return digest
    return image_info["Id"]


class HardenedDockerSpawner(AdmissionMixin, ResourcesMixin, KeysMixin, DockerSpawner):
    """A DockerSpawner whose containers are locked down by default.

    Every container gets ``cap_drop ALL``, ``no-new-privileges``, Docker's
    default seccomp profile, a non-root uid, and memory, CPU and pids limits.
    Privileged mode, host namespaces, the Docker socket and sensitive host
    paths are refused whatever the configuration asks.
    """

    # ---- hardening -------------------------------------------------------
    run_as_uid = Int(
        1000, config=True,
        help="""uid a container runs as when its image's USER is root (or unset).

        Never 0: the hub refuses a configuration that asks for it. Images whose
        USER is already a non-root user keep that user.""",
    )
    run_as_gid = Int(100, config=True, help="gid that goes with ``run_as_uid``.")
    cap_add = List(
        Unicode(), config=True,
        help="""Capabilities added back after ``cap_drop: ALL``, by name (e.g. ``NET_BIND_SERVICE``).

        Root-equivalent capabilities (SYS_ADMIN, SYS_PTRACE, SYS_MODULE, NET_ADMIN,
        DAC_READ_SEARCH, BPF, ...) are refused. As the container user is not root,
        added capabilities only reach programs with file capabilities.""",
    )
    read_only_root = Bool(
        False, config=True,
        help="""Mount the container's root filesystem read-only.

        /tmp becomes a tmpfs (``tmpfs_size``) and the home directory must be a
        volume (``volumes``), so users can still write their work.""",
    )
    tmpfs_size = Unicode("1g", config=True, help="Size of the /tmp tmpfs when ``read_only_root`` is on.")
    extra_forbidden_host_paths = List(
        Unicode(), config=True,
        help="""Host paths that may not be mounted, in addition to the built-in list
        (/, /etc, /proc, /sys, /dev, /boot, /usr, /lib, /root, /run, /var/run,
        /var/lib/docker and any container runtime socket). The built-in list cannot be shortened.""",
    )

    # ---- limits ------------------------------------------------------------
    pids_limit = Int(
        1024, config=True,
        help="Maximum number of processes and threads in a container (stops fork bombs). Always set.",
    )
    shm_size = Unicode("256m", config=True, help="Size of /dev/shm (PyTorch data loaders need more than Docker's 64 MB).")
    max_mem_limit = Unicode("1t", config=True, help="Largest memory limit the configuration may ask for.")
    max_cpu_limit = Float(256.0, config=True, help="Largest CPU limit the configuration may ask for.")
    max_pids_limit = Int(1_000_000, config=True, help="Largest pids limit the configuration may ask for.")

    @default("mem_limit")
    def _default_mem_limit(self):
        return "2G"

    @default("cpu_limit")
    def _default_cpu_limit(self):
        return 1.0

    # ---- audit -------------------------------------------------------------
    audit_log_file = Unicode(
        "", config=True,
        help="""File that receives one JSON line per spawn, stop and denial. Empty: none.

        Lines carry user, server, image and digest, limits, decision and reasons,
        never key material or tokens.""",
    )
    audit_to_hub_log = Bool(True, config=True, help="Also write audit lines to the hub log (INFO).")

    # ---- internals ---------------------------------------------------------
    _io_executor = None  # our own threads for slow I/O, never DockerSpawner's single worker
    _io_client = None

    @property
    def io_executor(self):
        cls = self.__class__
        if cls._io_executor is None:
            cls._io_executor = ThreadPoolExecutor(4, thread_name_prefix="hardened-spawner-io")
        return cls._io_executor

    def io_docker(self, method, *args, **kwargs):
        """Run a docker-py call on the I/O pool (pulls, image reads), off DockerSpawner's thread."""

        def call():
            cls = self.__class__
            if cls._io_client is None:
                cls._io_client = docker.APIClient(
                    version="auto", **{**docker.utils.kwargs_from_env(), **self.client_kwargs}
                )
            return getattr(cls._io_client, method)(*args, **kwargs)

        return asyncio.wrap_future(self.io_executor.submit(call))

    @property
    def audit(self):
        return AuditLog(self.audit_log_file, self.log if self.audit_to_hub_log else None)

    # ---- configuration checks ---------------------------------------------
    def config_problems(self, extra_host_config=None, extra_create_kwargs=None, volumes=None):
        """Unsafe settings as ``(setting, message)`` pairs (empty when safe).

        Callables are checked once evaluated, at spawn; pass their values in.
        """
        cls = type(self).__name__
        ehc = self.extra_host_config if extra_host_config is None else extra_host_config
        eck = self.extra_create_kwargs if extra_create_kwargs is None else extra_create_kwargs
        vols = self.volumes if volumes is None else volumes
        forbidden = tuple(self.extra_forbidden_host_paths)
        problems = []
        if isinstance(ehc, dict):
            problems += safety.check_host_config(f"{cls}.extra_host_config", ehc, forbidden)
        if isinstance(eck, dict):
            problems += safety.check_create_kwargs(f"{cls}.extra_create_kwargs", eck)
        problems += safety.check_mounts(f"{cls}.volumes", volumes=vols, extra_forbidden=forbidden)
        problems += safety.check_mounts(f"{cls}.mounts", mounts=self.mounts, extra_forbidden=forbidden)
        problems += safety.check_network(f"{cls}.network_name", self.network_name)
        problems += safety.check_capabilities(f"{cls}.cap_add", self.cap_add)
        problems += safety.check_uid(f"{cls}.run_as_uid", self.run_as_uid)
        problems += self.ssh_config_problems()
        if not callable(self.image):
            problems += self._image_problems(f"{cls}.image", self.image)
        allowed = self.allowed_images
        if isinstance(allowed, dict):
            for name, ref in allowed.items():
                problems += self._image_problems(f"{cls}.allowed_images[{name!r}]", ref)
        problems += self.profile_problems()
        problems += self.admission_problems()
        return problems

    @staticmethod
    def _image_problems(setting, ref):
        try:
            reference.parse(ref)
        except reference.BadReference as e:
            return [(setting, str(e))]
        return []

    # ---- user options -----------------------------------------------------
    async def _run_apply_user_options(self, user_options):
        """Validate user options first: a bad one is HTTP 400 and creates nothing."""
        self.validate_user_options(user_options)
        await super()._run_apply_user_options(user_options)

    def validate_user_options(self, user_options):
        self.select_profile(user_options)
        self._check_image_option(user_options)

    def _check_image_option(self, user_options):
        """HTTP 400 unless the image the user picked is an allowed, well-formed one."""
        image = (user_options or {}).get("image")
        if image:
            allowed = self._get_allowed_images()
            if allowed != "*" and image not in (allowed or {}):
                names = ", ".join(allowed or {}) or "none"
                raise web.HTTPError(400, f"Image {image!r} is not allowed here. Allowed images: {names}.")
            target = image if allowed == "*" else allowed[image]
            try:
                reference.parse(target)
            except reference.BadReference as e:
                raise web.HTTPError(400, f"Image {image!r} cannot be used: {e}") from None

    # ---- progress ----------------------------------------------------------
    def _emit(self, progress, message):
        self._events.append({"progress": progress, "message": message})
        self.log.info("%s: %s", self._log_name, message)

    async def progress(self):
        """Yield the spawn's phase messages as they happen (JupyterHub stops us when done)."""
        sent = 0
        while True:
            events = getattr(self, "_events", [])
            while sent < len(events):
                yield events[sent]
                sent += 1
            await asyncio.sleep(0.25)

    # ---- image ------------------------------------------------------------
    async def pull_image(self, image):
        """Pull with the digest kept: DockerSpawner 14 pulls ``repo@sha256:x`` as tag ``x``."""
        if self.pull_policy == "skip" or image == getattr(self, "_image_checked", None):
            return  # already pulled and inspected by this start's checks
        ref = reference.parse(image)
        present = True
        try:
            await self.io_docker("inspect_image", image)
        except ImageNotFound:
            present = False
        if self.pull_policy.lower() == "always" or not present:
            if self.pull_policy == "never" and not present:
                raise SpawnRefused(
                    f"Image {image} is not on this Docker host and pull_policy is 'never': "
                    "ask the hub admin to pull or build it.",
                    reason="image-missing",
                )
            self.log.info("pulling %s", ref.pull_ref)
            try:
                await self.io_docker("pull", ref.pull_ref)
            except APIError as e:
                raise SpawnRefused(
                    f"Image {image} could not be pulled: {e.explanation or e}. "
                    "Check the image name and that the hub can reach its registry.",
                    reason="image-pull-failed",
                ) from None

    async def _resolve_image(self):
        """Image to run: the user's allowed choice or the configured default, checked and present.

        The profile was chosen (and the options checked) by ``profile_limits`` just before."""
        self._check_image_option(self.user_options)
        image_option = (self.user_options or {}).get("image")
        if image_option:
            self.image = await self.check_allowed(image_option)
        try:
            reference.parse(self.image)
        except reference.BadReference as e:
            raise SpawnRefused(f"The configured image cannot be used: {e}", reason="bad-reference") from None
        self._image_checked = None
        await self.pull_image(self.image)
        info = await self.io_docker("inspect_image", self.image)
        self._image_checked = self.image
        return info

    def _container_user(self, image_info):
        """The image's USER unless it is root; then the configured non-root uid."""
        image_user = (image_info.get("Config") or {}).get("User") or ""
        if safety.is_root_user(image_user):
            self.log.warning(
                "image %s runs as %r; starting it as uid %s instead",
                self.image, image_user or "root", self.run_as_uid,
            )
            return f"{self.run_as_uid}:{self.run_as_gid}"
        return image_user

    # ---- start / stop ------------------------------------------------------
    async def _evaluated(self, value):
        value = self._eval_if_callable(value)
        if inspect.isawaitable(value):
            value = await value
        return self._render_templates(value)

    async def _prepare(self):
        """Every check, before anything exists. Returns the create kwargs and audit facts."""
        self._emit(5, "Checking the server configuration")
        extra_host_config = await self._evaluated(self.extra_host_config)
        extra_create_kwargs = await self._evaluated(self.extra_create_kwargs)
        problems = self.config_problems(extra_host_config, extra_create_kwargs)
        limits, limit_problems = self.profile_limits()
        problems += [p for p in limit_problems if p not in problems]
        if problems:
            raise UnsafeConfig(problems)

        self._emit(15, f"Checking image {self.user_options.get('image') or self.image}")
        image_info = await self._resolve_image()
        decision = await self.admit_image(image_info)
        digest = image_digest(self.image, image_info)
        user = self._container_user(image_info)
        await self.fetch_ssh_keys()
        limits = await self.allocate_gpus(limits)  # last: a refusal above never holds a GPU

        self._emit(40, f"Preparing a container with {limits.describe()}")
        hardening = Hardening(
            user=user,
            cap_add=tuple(self.cap_add),
            read_only_root=self.read_only_root,
            tmpfs=(("/tmp", f"rw,nosuid,nodev,size={self.tmpfs_size}"),),
            gpu_request_style=self.gpu_request_style,
        )
        spec = ContainerSpec(
            image=self.image,
            name=self.container_name,
            command=await self.get_command(),
            environment=self.get_env(),
            port=self.port,
            volume_binds=self.volume_binds,
            volume_mount_points=self.volume_mount_points,
            mounts=self.mount_binds,
            links=self.links,
            network_name=self.network_name,
            use_internal_ip=self.use_internal_ip,
            host_ip=self.host_ip,
            remove=self.remove,
            extra_create_kwargs=extra_create_kwargs,
            extra_host_config=extra_host_config,
        )
        version = policy_version(spec, limits, hardening, __version__)
        labels = {
            LABEL_MANAGED: "true",
            LABEL_OWNER: self.user.name,
            LABEL_SERVER: self.name or "",
            LABEL_POLICY: version,
            **self.resource_labels(limits),
        }
        kwargs = self.add_ssh_mounts(build_create_kwargs(spec, limits, hardening, labels))
        facts = {"image": self.image, "digest": digest, "image_id": image_info["Id"], "container_user": user, "limits": limits.as_audit(),
                 "sbom": decision.sbom if decision else "",
                 "policy_version": version, **self.resource_facts()}
        return kwargs, facts

    def _audit_fields(self, **fields):
        return {"user": self.user.name, "server": self.name or "", **fields}

    async def start(self):
        """Start; a start that fails frees the GPUs it was given."""
        try:
            ip_port = await self._start()
        except BaseException as e:
            refused = self.resources_start_failed(e)
            if refused:
                raise refused from None
            raise
        self.resources_started()
        return ip_port

    async def _start(self):
        self._events = []
        try:
            self._create_kwargs, facts = await self._prepare()
        except UnsafeConfig as e:
            self.audit.write("spawn.denied", **self._audit_fields(
                image=self.image, decision="deny", reasons=[f"{s}: {m}" for s, m in e.problems]))
            raise SpawnRefused(
                "The hub's configuration is unsafe, so no server was started; tell the hub admin: "
                + "; ".join(f"{s}: {m}" for s, m in e.problems),
                reason="unsafe-config",
            ) from None
        except SpawnRefused as e:
            self.audit.write("spawn.denied", **self._audit_fields(
                image=self.image, decision="deny", reasons=[str(e)]))
            raise
        except web.HTTPError as e:
            self.audit.write("spawn.denied", **self._audit_fields(
                image=self.image, decision="deny", reasons=[e.log_message or str(e)]))
            raise
        except (DockerException, RequestException) as e:
            self.audit.write("spawn.denied", **self._audit_fields(
                image=self.image, decision="deny", reasons=[f"docker unreachable: {e}"]))
            raise SpawnRefused(
                f"The hub cannot reach the Docker daemon ({self._docker_url()}): {e}. "
                "Ask the hub admin to start dockerd or fix DOCKER_HOST.",
                reason="docker-unreachable",
            ) from None

        await self._drop_stale_container(facts["policy_version"])
        self._emit(60, "Starting the container")
        self._created_here = False
        try:
            ip_port = await super().start()
        except Exception as e:
            await self._remove_if_created_here()
            self.audit.write("spawn.failed", **self._audit_fields(**facts, decision="error", reasons=[str(e)]))
            raise
        self.audit.write("spawn", **self._audit_fields(**facts, decision="admit", reasons=[],
                                                      container=self.container_id[:12]))
        self._emit(80, "Waiting for the server to answer")
        return ip_port

    def _docker_url(self):
        return docker.utils.kwargs_from_env().get("base_url") or "unix:///var/run/docker.sock"

    async def _drop_stale_container(self, version):
        """A stopped container made under another policy is recreated, never restarted."""
        if self.remove:
            return  # DockerSpawner removes any leftover container itself
        existing = await self.get_object()
        if not existing:
            return
        labels = (existing.get("Config") or {}).get("Labels") or {}
        if labels.get(LABEL_POLICY) != version:
            self.log.warning(
                "Container %s was created under policy %s, not %s: recreating it",
                self.container_name, labels.get(LABEL_POLICY), version,
            )
            self._emit(55, "Recreating the container under the current policy")
            await self.remove_object()

    async def create_object(self):
        kwargs = dict(self._create_kwargs)
        kwargs["host_config"] = self.client.create_host_config(**kwargs["host_config"])
        obj = await self.docker("create_container", **kwargs)
        # known at once, so a failure from here on removes it (``_remove_if_created_here``)
        self.object_id = obj[self.object_id_key]
        self._created_here = True
        await self.deliver_conda_guard(obj["Id"])
        return obj

    async def _remove_if_created_here(self):
        if getattr(self, "_created_here", False) and self.object_id:
            try:
                await self.docker("remove_container", self.object_id, force=True, v=True)
            except APIError as e:
                self.log.warning("could not remove failed container %s: %s", self.object_id[:12], e)
            self.object_id = ""

    async def stop(self, now=False):
        container = self.container_id[:12]
        await self.audit_conda_drift()
        await super().stop(now=now)
        self.release_gpus("stopped")
        self.audit.write("stop", **self._audit_fields(image=self.image, container=container))
