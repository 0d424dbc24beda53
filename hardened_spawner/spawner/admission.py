"""Image admission on the spawner: traits, the admission step of ``start()``,
and the runtime conda guard (policy files in the container, drift at stop).

Reading an image is slow (about a second for a large one), so facts are read
once per image digest, by one spawn however many start at once, on this
mixin's own threads. Decisions are cached per image, reference, policy,
lock file, reports and day, so a changed policy or a new report counts at
the next spawn.
"""

import asyncio
import datetime
import json
import time
from concurrent.futures import ThreadPoolExecutor

import docker
from docker.errors import APIError, DockerException, NotFound
from traitlets import Bool, Dict, Float, Int, List, Unicode
from traitlets.config import Configurable

from ..admission import engine, evidence, facts, guard, layers
from ..admission.cache import SingleFlight
from ..admission.policy import Policy
from ..errors import SpawnRefused


class AdmissionMixin(Configurable):
    """Admission traits and steps for HardenedDockerSpawner."""

    admission_enabled = Bool(
        True, config=True,
        help="""Check every image before a container is created from it (see docs/admission.md).

        Turning this off removes every image rule below; the hardened container
        settings still apply.""",
    )
    admission_rule_modes = Dict(
        Unicode(), config=True,
        help="""Mode per rule id: ``enforce`` (deny the spawn), ``audit`` (warn, log and spawn) or ``off``.

        Rules not listed keep their default (enforce, except image.no-healthcheck and
        conda.python-eol-soon, which warn). Example:
        ``{"image.user-root": "audit", "image.no-healthcheck": "off"}``.""",
    )
    admission_image_allowlist = List(
        Unicode(), config=True,
        help="""Registry/repository patterns images must match (rule image.not-allowlisted). Empty: any.

        ``*`` matches within one path component, ``**`` across components; no registry
        means docker.io. Example: ``["registry.example.org/jupyter/**", "hardened-spawner/*"]``.""",
    )
    admission_require_digest = Bool(
        False, config=True,
        help="Require images referenced by digest, name@sha256:... (rule image.digest-required).",
    )
    admission_max_image_age_days = Int(
        0, config=True,
        help="Deny images built more than this many days ago (rule image.too-old). 0: no limit.",
    )
    admission_setuid_paths = List(
        Unicode(), ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin", "/usr/local/sbin"], config=True,
        help="""Directories searched for setuid/setgid files (rule image.setuid-binary).

        Each is read from the image as a tar stream, so large trees (/usr/lib) cost time.""",
    )
    admission_setuid_allowlist = List(
        Unicode(), config=True,
        help="Setuid/setgid files that are allowed, as path patterns (e.g. ``/usr/bin/passwd``).",
    )
    admission_env_secret_allowlist = List(
        Unicode(), ["GPG_KEY", "PYTHON_GPG_KEY"], config=True,
        help="""Image ENV names that look like secrets but are not (rule image.env-secret).

        The default lists the public key fingerprints of the official Python images.""",
    )
    admission_sshd_config = Unicode(
        "/etc/ssh/sshd_config", config=True,
        help="The sshd configuration file in images that is checked (rules sshd.root-login, sshd.password-auth).",
    )
    admission_cache_size = Int(256, config=True, help="How many images' facts and decisions are kept in memory.")
    admission_read_layers = Bool(
        True, config=True,
        help="""List directories (site-packages names, setuid modes) straight from the image's overlay2
        layers when the hub can read the Docker daemon's data root: about 0.3 s instead of 1-2 s for a
        large image. Off, or when the layers are not readable, they are read through Docker's archive API.""",
    )

    conda_prefix = Unicode(
        "/opt/conda", config=True,
        help="""The conda environment checked in images: ``<prefix>/conda-meta/*.json`` records.

        Images without conda-meta at this prefix skip the conda rules, unless
        required packages or a lock file are configured. Empty: no conda checks.""",
    )
    conda_allowed_channels = List(
        Unicode(), config=True,
        help="""Channels installed packages may come from (rule conda.channel-not-allowed). Empty: any.

        Names (``conda-forge``, resolved with ``conda_channel_alias``), ``defaults``, or URLs.
        Compared on normalised URLs: scheme, credentials, tokens and platform subdirectories are ignored.""",
    )
    conda_channel_alias = Unicode(
        "https://conda.anaconda.org", config=True,
        help="Base URL that channel names are resolved against, as conda's ``channel_alias``.",
    )
    conda_channel_mirrors = Dict(
        Unicode(), config=True,
        help="""Mirror URL -> the channel it mirrors, so packages from a mirror count as the channel.

        Example: ``{"https://conda-mirror.example.org/conda-forge": "conda-forge"}``.""",
    )
    conda_python_eol_warn_days = Int(
        180, config=True,
        help="Warn this many days before the environment's Python reaches end of life (rule conda.python-eol-soon).",
    )
    conda_python_eol_dates = Dict(
        Unicode(), config=True,
        help="""End-of-life dates that override or extend the shipped table, e.g. ``{"3.10": "2026-10-31"}``.""",
    )
    conda_denied_packages = List(
        Unicode(), config=True,
        help="""MatchSpecs of packages that must not be installed (rule conda.package-denied),
        e.g. ``["pycrypto", "openssl <3", "conda-forge::evil-pkg"]``. A channel in the spec is compared too.""",
    )
    conda_required_packages = List(
        Unicode(), config=True,
        help="""MatchSpecs that must each match an installed package (rule conda.package-required),
        e.g. ``["jupyterhub >=6,<7", "python >=3.11"]``.""",
    )
    conda_lock_file = Unicode(
        "", config=True,
        help="""Lock file the environment must match exactly (rule conda.lock-mismatch): a
        ``conda list --explicit --md5`` file, a conda-lock file or a pixi.lock. Empty: none.""",
    )
    conda_lock_environment = Unicode("default", config=True, help="Environment of a pixi.lock/conda-lock file.")
    conda_lock_platform = Unicode("linux-64", config=True, help="Platform of a pixi.lock/conda-lock file.")
    conda_pip_allowlist = List(
        Unicode(), config=True,
        help="Distributions pip may have installed into the conda environment (rule conda.pip-pollution).",
    )
    conda_guard = Bool(
        True, config=True,
        help="""Write the channel policy into each container as a read-only system ``/etc/conda/.condarc``
        (``channels``, ``channel_alias`` and ``allowlist_channels``, each ``#!final``) and the pip
        index settings as ``/etc/pip.conf`` and ``<prefix>/pip.conf``, so environments users create stay on
        approved channels. Needs ``conda_allowed_channels`` or ``pip_index_url``.""",
    )
    conda_drift_audit = Bool(
        True, config=True,
        help="At stop, write the changes under ``conda_prefix`` since the image (``docker diff``) to the audit log.",
    )
    pip_index_url = Unicode("", config=True, help="pip ``index-url`` for containers (runtime guard). Empty: pip's default.")
    pip_extra_index_urls = List(Unicode(), config=True, help="pip ``extra-index-url`` values for containers.")

    scan_report_dir = Unicode(
        "", config=True,
        help="""Directory of Trivy, Grype or CycloneDX JSON reports from CI, named with the image digest
        (e.g. ``sha256-<hex>.trivy.json``). Empty: no scanner gate. Set: an image without a report is
        denied (rule scan.report-missing; set it to ``audit`` to warn instead).""",
    )
    scan_deny_severity = Unicode(
        "critical", config=True,
        help="Deny images with vulnerabilities at or above this severity: low, medium, high or critical.",
    )
    scan_cve_allowlist = Dict(
        Unicode(), config=True,
        help="""Vulnerabilities accepted until a date: ``{"CVE-2024-12345": "2026-12-31"}``. After the date
        the vulnerability blocks again.""",
    )

    # ---- signatures, registry reads, OSV (issue 15; docs/image-signing.md) -----------
    admission_signature_policy = List(
        Dict(), config=True,
        help="""Who may sign which images (rules image.signature, image.signature-missing,
        image.signature-unverifiable). Empty: signatures are not checked.

        A list of entries; the first whose ``images`` pattern (or list of patterns, as in
        ``admission_image_allowlist``) matches the image's registry/repository applies. An entry
        names public keys (PEM files) for cosign key-based signatures, Sigstore keyless
        identities (``{"issuer": ..., "subject": ...}``), or ``"allow_unsigned": true``. An image
        that matches no entry is refused. Example: ``[{"images": "registry.example.org/jupyter/**",
        "keys": ["/etc/jupyterhub/cosign.pub"]}]``.""",
    )
    admission_signature_trusted_root = Unicode(
        "", config=True,
        help="""Sigstore ``trusted_root.json`` that keyless signatures are verified against (a private
        Sigstore deployment). Empty: the public-good trust root shipped with the ``sigstore`` package
        (it is not refreshed over the network at spawn; upgrade the package or point this at a file
        you refresh).""",
    )
    admission_registry_plain_http = List(
        Unicode(), config=True,
        help="""Registries (``host:port`` as in image names) that signatures are read from over plain
        HTTP instead of HTTPS, like Docker's ``insecure-registries``. Example: ``["127.0.0.1:5000"]``.""",
    )
    admission_registry_timeout = Float(
        10.0, config=True,
        help="Seconds each registry request for signatures may take before the image counts as unverifiable.",
    )
    admission_registry_auth_file = Unicode(
        "", config=True,
        help="""Docker ``config.json`` with credentials for reading signatures from private registries.
        Empty: the hub user's ``~/.docker/config.json`` when it exists.""",
    )
    scan_osv_file = Unicode(
        "", config=True,
        help="""Local vulnerability list in OSV JSON format (a list of entries or ``{"vulns": [...]}``),
        matched against the image's SBOM packages (pkg:conda, pkg:pypi, pkg:deb): a scanner gate that
        needs no Trivy or Grype report. Matches count against ``scan_deny_severity`` and
        ``scan_cve_allowlist``. Empty: none.""",
    )

    # ---- policy ---------------------------------------------------------------
    def admission_policy(self):
        return Policy(
            modes=tuple(sorted(self.admission_rule_modes.items())),
            image_allowlist=tuple(self.admission_image_allowlist),
            require_digest=self.admission_require_digest,
            max_image_age_days=self.admission_max_image_age_days,
            setuid_paths=tuple(self.admission_setuid_paths),
            setuid_allowlist=tuple(self.admission_setuid_allowlist),
            env_secret_allowlist=tuple(self.admission_env_secret_allowlist),
            sshd_config=self.admission_sshd_config,
            conda_prefix=self.conda_prefix,
            allowed_channels=tuple(self.conda_allowed_channels),
            channel_alias=self.conda_channel_alias,
            channel_mirrors=tuple(sorted(self.conda_channel_mirrors.items())),
            python_eol_warn_days=self.conda_python_eol_warn_days,
            python_eol_dates=tuple(sorted(self.conda_python_eol_dates.items())),
            denied_packages=tuple(self.conda_denied_packages),
            required_packages=tuple(self.conda_required_packages),
            lock_file=self.conda_lock_file,
            lock_environment=self.conda_lock_environment,
            lock_platform=self.conda_lock_platform,
            pip_allowlist=tuple(self.conda_pip_allowlist),
            scan_report_dir=self.scan_report_dir,
            scan_deny_severity=self.scan_deny_severity,
            scan_cve_allowlist=tuple(sorted(self.scan_cve_allowlist.items())),
            signature_policy=tuple(json.dumps(e, sort_keys=True) for e in self.admission_signature_policy),
            signature_trusted_root=self.admission_signature_trusted_root,
            registry_plain_http=tuple(self.admission_registry_plain_http),
            registry_timeout=self.admission_registry_timeout,
            registry_auth_file=self.admission_registry_auth_file,
            scan_osv_file=self.scan_osv_file,
        )

    def admission_problems(self):
        """Configuration errors in the admission settings, as ``(setting, message)``. No file I/O."""
        if not self.admission_enabled:
            return []
        cls = type(self).__name__
        policy = self.admission_policy()
        problems = policy.problems(f"{cls}.")
        if (self.conda_guard and getattr(self, "read_only_root", False) and not problems
                and guard.policy_files(policy, self.pip_index_url, tuple(self.pip_extra_index_urls))):
            problems.append((f"{cls}.conda_guard", "cannot write /etc/conda/.condarc and pip.conf into a read-only "
                             "root filesystem (read_only_root = True): set conda_guard = False and bake the files "
                             "into the image, or turn read_only_root off"))
        return problems

    def admission_file_problems(self):
        """Problems with the configured lock file and report directory (at hub start and in CI)."""
        if not self.admission_enabled:
            return []
        return self.admission_policy().file_problems(f"{type(self).__name__}.")

    # ---- shared per class: threads, client, caches ---------------------------------
    _admission_state = None

    def _admission(self):
        cls = type(self)
        if cls._admission_state is None:
            kwargs = {**docker.utils.kwargs_from_env(), **self.client_kwargs}
            cls._admission_state = {
                "executor": ThreadPoolExecutor(facts.THREADS, thread_name_prefix="hardened-spawner-admission"),
                "client": docker.APIClient(version="auto", **kwargs),
                "inputs": SingleFlight(self.admission_cache_size),
                "decisions": SingleFlight(self.admission_cache_size * 4),
            }
        return cls._admission_state

    def _admission_run(self, fn, *args):
        state = self._admission()
        return asyncio.get_running_loop().run_in_executor(state["executor"], fn, state["client"], *args)

    async def _read_inputs(self, image_info, plan):
        executor, loop = self._admission()["executor"], asyncio.get_running_loop()
        layer_dirs = None
        if self.admission_read_layers:
            layer_dirs = await loop.run_in_executor(executor, layers.overlay_layers, image_info)
        read = await facts.read_facts(self._admission_run, image_info["Id"], plan, layer_dirs)
        return await loop.run_in_executor(executor, engine.prepare, read, plan)

    # ---- the admission step ------------------------------------------------------
    async def admit_image(self, image_info):
        """Decide whether the resolved image may run; raise SpawnRefused if not.

        Called by ``_prepare()`` right after the image is resolved, before anything
        is created. Every decision is audited with all its findings.
        """
        if not self.admission_enabled:
            return None
        started = time.perf_counter()
        policy = self.admission_policy()
        state = self._admission()
        image_id = image_info["Id"]
        digests = engine.image_digests(image_info)
        today = datetime.date.today()
        loop = asyncio.get_running_loop()

        async def decide():
            plan = engine.plan_for(policy)
            inputs, read = await state["inputs"].get((image_id, plan), lambda: self._read_inputs(image_info, plan))
            context = await loop.run_in_executor(state["executor"], engine.load_context, policy, digests, signatures)
            return engine.evaluate(policy, self.image, image_info, inputs, context, today), read

        fingerprint = await loop.run_in_executor(state["executor"], engine.context_fingerprint, policy, digests)
        # every admission asks the registry: a changed signature or an outage is never served from the cache
        signatures = await loop.run_in_executor(state["executor"], evidence.load, policy, self.image, image_info)
        key = (self.image, image_id, policy.digest(), fingerprint, signatures and signatures.fingerprint,
               today.isoformat())
        try:
            (decision, read), how = await state["decisions"].get(key, decide)
        except (facts.FactsError, DockerException) as e:
            self.audit.write("admission", **self._audit_fields(
                image=self.image, digest=image_id, decision="error", reasons=[str(e)]))
            raise SpawnRefused(
                f"The image {self.image} could not be checked ({e}), so it was not started. "
                "Try again; if it persists, tell the hub admin.", reason="admission-failed") from None
        self.audit.write("admission", **self._audit_fields(
            image=self.image, digest=decision.digest, image_id=image_id,
            decision="admit" if decision.admitted else "deny", cache=how, facts=read if how == "computed" else "cached",
            policy=policy.digest(), seconds=round(time.perf_counter() - started, 3),
            signature=decision.signature, sbom=decision.sbom,
            findings=[f.as_dict() for f in decision.findings]))
        if not decision.admitted:
            raise SpawnRefused(
                f"The image {self.image} was refused by this hub's image policy:\n{decision.explain()}",
                reason="image-denied", findings=decision.findings)
        if decision.warnings:
            self._emit(25, "Image policy warnings: " + "; ".join(f"[{f.rule}] {f.message}" for f in decision.warnings))
        return decision

    # ---- runtime conda guard -----------------------------------------------------
    async def deliver_conda_guard(self, container_id):
        """Put the policy's .condarc and pip.conf into the created (not yet started) container."""
        if not (self.admission_enabled and self.conda_guard):
            return
        policy = self.admission_policy()
        files = guard.policy_files(policy, self.pip_index_url, tuple(self.pip_extra_index_urls))
        if not files:
            return
        archive = guard.archive(files)
        try:
            await self._admission_run(lambda client: client.put_archive(container_id, "/", archive))
        except APIError as e:  # the spawner removes the container it just created
            raise SpawnRefused(
                f"The conda/pip policy files could not be written into the container: {e.explanation or e}. "
                "With read_only_root the hub cannot add them; tell the hub admin.",
                reason="conda-guard-failed") from None
        self.audit.write("conda.guard", **self._audit_fields(
            image=self.image, container=container_id[:12], files=sorted("/" + p for p in files)))

    async def audit_conda_drift(self):
        """Write what changed under the conda prefix since the image (docker diff) to the audit log."""
        if not (self.admission_enabled and self.conda_drift_audit and self.conda_prefix and self.container_id):
            return
        container = self.container_id
        try:
            changes = await self._admission_run(lambda client: client.diff(container))
        except (NotFound, APIError, DockerException) as e:
            self.log.info("no conda drift check for %s: %s", container[:12], e)
            return
        delivered = guard.policy_files(self.admission_policy(), self.pip_index_url, tuple(self.pip_extra_index_urls))
        drift = guard.drift(changes or [], self.conda_prefix, delivered if self.conda_guard else ())
        if drift["total"]:
            self.audit.write("conda.drift", **self._audit_fields(
                image=self.image, container=container[:12], prefix=self.conda_prefix, **drift))

