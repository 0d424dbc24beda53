"""Every setting of the hardened spawners, declared once, and the pure policies built from them.

:class:`HardenedSpawner` is DockerSpawner plus the traits of
:mod:`.hardening`, :mod:`.admission`, :mod:`.resources` and :mod:`.ssh`.
It has no lifecycle: :mod:`..base` adds the spawn pipeline, and the two
backends subclass that. ``c.HardenedSpawner.*`` configures both backends;
``c.HardenedDockerSpawner.*`` and ``c.HardenedSwarmSpawner.*`` one each.

Nothing here talks to Docker: the builders turn settings into
:class:`~...admission.policy.Policy`, :class:`~...keys.validation.KeyPolicy`,
:class:`~...decisions.limits.Ceilings`, the profile catalog, and the list
of unsafe settings that stops the hub (``enforce_config``).
"""

from dockerspawner import DockerSpawner
from traitlets import default

from ... import telemetry
from ...audit import AuditLog
from ...decisions import host_paths, profiles, safety
from ...decisions.container import Hardening
from ...decisions.home_quota import home_volume_problems
from ...decisions.home_watch import watch_problems
from ...decisions.limits import Ceilings, log_bound_problems, tmpfs_problems
from ...decisions.reference import BadReference, parse
from ...units import parse_bytes
from .admission import AdmissionSettings
from .hardening import HardeningSettings
from .resources import ResourceSettings
from .ssh import SSHSettings

LIMIT_TRAITS = ("mem_limit", "cpu_limit", "pids_limit", "shm_size", "mem_guarantee", "cpu_guarantee",
                "log_max_size", "log_max_file", "disk_limit", "home_quota", "home_files")


class HardenedSpawner(HardeningSettings, AdmissionSettings, ResourceSettings, SSHSettings, DockerSpawner):
    """Settings shared by HardenedDockerSpawner and HardenedSwarmSpawner.

    Every container gets ``cap_drop ALL``, ``no-new-privileges``, Docker's
    default seccomp profile, a non-root uid, and memory, CPU and pids limits.
    Privileged mode, host namespaces, the Docker socket and sensitive host
    paths are refused whatever the configuration asks. ``c.HardenedSpawner.*``
    applies to both backends.
    """

    @default("mem_limit")
    def _default_mem_limit(self):
        return "2G"

    @default("cpu_limit")
    def _default_cpu_limit(self):
        return 1.0

    @property
    def setting_prefix(self):
        """How problems name this class's settings, e.g. ``HardenedDockerSpawner.``."""
        return f"{type(self).__name__}."

    def audit_fields(self, **fields):
        return {"user": self.user.name, "server": self.name or "", **fields}

    @property
    def audit(self):
        telemetry.install()  # the hub's records become metrics and events
        return AuditLog(self.audit_log_file, self.log if self.audit_to_hub_log else None)

    def hardening(self):
        """The :class:`~...decisions.container.Hardening` the traits tagged ``hardening`` describe."""
        fields = {t.metadata["hardening"]: n for n, t in self.traits(hardening=lambda v: v is not None).items()}
        values = {f: getattr(self, n) for f, n in fields.items()}
        return Hardening(**{f: tuple(v) if isinstance(v, list) else v for f, v in values.items()})

    # ---- limits and profiles ----------------------------------------------------------
    def allowed_image_names(self):
        """``allowed_images`` evaluated: DockerSpawner's dict of names, or ``"*"``."""
        return self._get_allowed_images()

    def profile_catalog(self, raw_profiles=None):
        """``(profiles, problems)`` from ``raw_profiles`` (default: the ``profiles`` setting)
        and the limit settings; ``()`` gives the one profile the limit settings make alone."""
        try:
            ceilings = Ceilings(parse_bytes(self.max_mem_limit), self.max_cpu_limit, self.max_pids_limit)
        except ValueError as e:
            return (), [(f"{self.setting_prefix}max_mem_limit", str(e))]
        defaults = {name: self._eval_if_callable(getattr(self, name)) for name in LIMIT_TRAITS}
        defaults.update(gpu_idle_minutes=self.gpu_idle_minutes, gpu_max_age_minutes=self.gpu_max_age_minutes,
                        gpu_idle_warning_minutes=self.gpu_idle_warning_minutes)
        return profiles.build_catalog(
            f"{self.setting_prefix}profiles", self.profiles if raw_profiles is None else raw_profiles, defaults,
            ceilings, self.allowed_image_names(), gpu_count=len(self.gpu_ids) if self.gpu_ids else None,
        )

    def profile_problems(self):
        """Problems in the limit settings (checked as the profile they make alone) and in configured profiles."""
        problems = self.resource_problems(self.setting_prefix)
        if not (callable(self.mem_limit) or callable(self.cpu_limit)):  # callables: checked at spawn
            problems += self.profile_catalog(())[1]
        if self.profiles:
            problems += [p for p in self.profile_catalog()[1] if p not in problems]
        return problems

    # ---- unsafe settings ----------------------------------------------------------------
    @staticmethod
    def image_problems(setting, ref):
        try:
            parse(ref)
        except BadReference as e:
            return [(setting, str(e))]
        return []

    def config_problems(self, extra_host_config=None, extra_create_kwargs=None, volumes=None, rendered=False,
                        daemon=None):
        """Unsafe settings as ``(setting, message)`` pairs (empty when safe).

        Callables are checked once evaluated, at spawn; pass their values in.
        ``rendered``: also check the binds and mounts as DockerSpawner renders them
        for this user (``{username}`` filled, ``read_only_volumes`` merged).
        ``daemon``: the :class:`~...decisions.invariants.Daemon` (its socket and data
        root may not be mounted, nor may the socket's group be added).
        """
        cls = type(self).__name__
        ehc = self.extra_host_config if extra_host_config is None else extra_host_config
        eck = self.extra_create_kwargs if extra_create_kwargs is None else extra_create_kwargs
        vols = self.volumes if volumes is None else volumes
        forbidden = tuple(self.extra_forbidden_host_paths) + (daemon.forbidden_paths() if daemon else ())
        gids = daemon.forbidden_gids() if daemon else ()
        problems = []
        if isinstance(ehc, dict):
            problems += safety.check_host_config(f"{cls}.extra_host_config", ehc, forbidden, gids,
                                                 network=self.isolated_network())
        if isinstance(ehc, dict) and "log_config" in ehc:
            problems += self.log_config_problems(f"{cls}.extra_host_config['log_config']", ehc["log_config"])
        if isinstance(eck, dict):
            problems += safety.check_create_kwargs(f"{cls}.extra_create_kwargs", eck)
        if isinstance(self.environment, dict):
            problems += safety.check_environment(f"{cls}.environment", self.environment)
        problems += host_paths.check_mounts(f"{cls}.volumes", volumes=vols, extra_forbidden=forbidden)
        problems += host_paths.check_mounts(f"{cls}.read_only_volumes", volumes=self.read_only_volumes,
                                            extra_forbidden=forbidden)
        problems += host_paths.check_mounts(f"{cls}.mounts", mounts=self.mounts, extra_forbidden=forbidden)
        if rendered:  # only what the settings as written did not show already
            seen = {message for _, message in problems}
            problems += [p for p in host_paths.check_mounts(f"{cls}.volumes (as rendered for {self.user.name})",
                                                            binds=self.volume_binds, mounts=self.mount_binds,
                                                            extra_forbidden=forbidden) if p[1] not in seen]
        problems += safety.check_network(f"{cls}.network_name", self.network_name)
        problems += safety.check_capabilities(f"{cls}.cap_add", self.cap_add)
        problems += safety.check_uid(f"{cls}.run_as_uid", self.run_as_uid)
        problems += self.ssh_config_problems(self.setting_prefix)
        if not callable(self.image):
            problems += self.image_problems(f"{cls}.image", self.image)
        allowed = self.allowed_images
        if isinstance(allowed, dict):
            for name, ref in allowed.items():
                problems += self.image_problems(f"{cls}.allowed_images[{name!r}]", ref)
        problems += self.profile_problems()
        try:
            parse_bytes(self.min_free_disk)
        except ValueError as e:
            problems.append((f"{cls}.min_free_disk", f"{e}; '0' turns the check off"))
        if isinstance(vols, dict) and any(p.limits.home for p in self.profile_catalog()[0]):
            problems += home_volume_problems(f"{cls}.volumes", vols, self.notebook_dir)
        if self.home_quota_mode == "watch":
            problems += watch_problems(f"{cls}.home_quota_mode", self.profile_catalog()[0])
        if self.read_only_root:
            configured = any(c.__name__ in self.config and "tmpfs_size" in self.config[c.__name__]
                             for c in type(self).__mro__)
            problems += tmpfs_problems(f"{cls}.tmpfs_size", self.tmpfs_size, self.profile_catalog()[0], configured)
        problems += self.admission_problems(self.setting_prefix)
        return problems

    def log_config_problems(self, setting, log_config):
        """An admin's ``log_config`` applies to every profile: it must be bounded within each one's."""
        return [(setting, f"{message} (profile {profile.slug!r}); the invariants would refuse every spawn")
                for profile in self.profile_catalog()[0]  # a broken catalog is reported by profile_problems
                for message in log_bound_problems(log_config, profile.limits)]

    def isolated_network(self):
        """The network servers must be on, isolated (None: no isolation is enforced)."""
        return None

    def policy_volume(self):
        """The volume a read-only root's conda/pip policy files go in ("": the backend delivers none)."""
        return ""

    def file_problems(self):
        """Problems that need file reads (lock file, report directory): at hub start and in CI."""
        return self.admission_file_problems(self.setting_prefix)
