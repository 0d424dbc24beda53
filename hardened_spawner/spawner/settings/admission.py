"""Admission settings: image rules, the conda environment policy, scanner gates.

Each setting that shapes the policy is one trait tagged with the
:class:`~hardened_spawner.admission.policy.Policy` field it fills; its
default is that field's default, so it is written once. :meth:`admission_policy`
builds the immutable policy from the tags.
"""

import json

from traitlets import Bool, Dict, Float, HasTraits, Int, List, Unicode, Union

from ...admission import evidence, guard, provenance, signing, vsa_issuer
from ...admission.policy import Policy

DEFAULTS = Policy()


def policy_trait(kind, field, help, item=Unicode):
    """A configurable trait filling ``Policy.<field>``, with the Policy's default."""
    default = getattr(DEFAULTS, field)
    if kind is List:
        trait = List(item(), list(default), config=True, help=help)
    elif kind is Dict:
        trait = Dict(item(), dict(default), config=True, help=help)
    else:
        trait = kind(default, config=True, help=help)
    return trait.tag(policy=field)


def _frozen(value):
    """A trait value as an immutable, hashable Policy field (a list of dicts: canonical JSON strings)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for v in value)
    return value


class AdmissionSettings(HasTraits):
    """Traits of image admission (see docs/admission.md)."""

    admission_enabled = Bool(
        True, config=True,
        help="""Check every image before a container is created from it (see docs/admission.md).

        Turning this off removes every image rule below; the hardened container
        settings still apply.""",
    )
    admission_rule_modes = policy_trait(
        Dict, "modes",
        help="""Mode per rule id: ``enforce`` (deny the spawn), ``audit`` (warn, log and spawn) or ``off``.

        Rules not listed keep their default: enforce, except image.setuid-binary (inert under the
        no-new-privileges every container gets), conda.pip-pollution, image.no-healthcheck,
        image.base-not-pinned and conda.python-eol-soon, which warn. Example:
        ``{"image.user-root": "audit", "image.no-healthcheck": "off"}``.""",
    )
    admission_image_allowlist = policy_trait(
        List, "image_allowlist",
        help="""Registry/repository patterns images must match (rule image.not-allowlisted). Empty: any.

        ``*`` matches within one path component, ``**`` across components; no registry
        means docker.io. Example: ``["registry.example.org/jupyter/**", "hardened-spawner/*"]``.""",
    )
    admission_require_digest = policy_trait(
        Bool, "require_digest",
        help="Require images referenced by digest, name@sha256:... (rule image.digest-required).",
    )
    admission_max_image_age_days = policy_trait(
        Int, "max_image_age_days",
        help="Deny images built more than this many days ago (rule image.too-old). 0: no limit.",
    )
    admission_setuid_paths = policy_trait(
        List, "setuid_paths",
        help="""Directories searched for setuid/setgid files (rule image.setuid-binary).

        Each is read from the image as a tar stream, so large trees (/usr/lib) cost time.""",
    )
    admission_setuid_allowlist = policy_trait(
        List, "setuid_allowlist",
        help="Setuid/setgid files that are allowed, as path patterns (e.g. ``/usr/bin/passwd``).",
    )
    admission_env_secret_allowlist = policy_trait(
        List, "env_secret_allowlist",
        help="""Image ENV names that look like secrets but are not (rule image.env-secret).

        The default lists the public key fingerprints of the official Python images.""",
    )
    admission_sshd_config = policy_trait(
        Unicode, "sshd_config",
        help="The sshd configuration file in images that is checked (rules sshd.root-login, sshd.password-auth).",
    )
    admission_cache_size = Int(256, config=True, help="How many images' facts and decisions are kept in memory.")
    admission_read_layers = Bool(
        True, config=True,
        help="""List directories (site-packages names, setuid modes) straight from the image's overlay2
        layers when the hub can read the Docker daemon's data root: about 0.3 s instead of 1-2 s for a
        large image. Off, or when the layers are not readable, they are read through Docker's archive API.""",
    )

    conda_prefix = policy_trait(
        Unicode, "conda_prefix",
        help="""The conda environment checked in images: ``<prefix>/conda-meta/*.json`` records.

        Images without conda-meta at this prefix skip the conda rules, unless
        required packages or a lock file are configured. Empty: no conda checks.""",
    )
    conda_envs = policy_trait(
        List, "conda_envs",
        help="""Environments under ``<conda_prefix>/envs`` that are checked too, by name; ``*``: every one.

        Each gets the channel, end-of-life, denied-package and pip rules, and findings name it;
        required packages and the lock file apply to the environment at ``conda_prefix``, which
        runs the notebook. Without ``admission_read_layers`` Docker's archive API cannot list a
        directory, so ``*`` streams all of ``envs``: name the environments to read only their records.

        ``*`` also checks every other conda prefix on the image's filesystem (any ``conda-meta``
        directory outside ``conda_prefix``, e.g. ``/opt/other``), found by walking the image's layers
        (about 0.1 s) or, without them, by one names-only stream of ``/`` with ``conda_prefix`` masked.""",
    )
    conda_allowed_channels = policy_trait(
        List, "allowed_channels",
        help="""Channels installed packages may come from (rule conda.channel-not-allowed). Empty: any.

        Names (``conda-forge``, resolved with ``conda_channel_alias``), ``defaults``, or URLs.
        Compared on normalised URLs: scheme, credentials, tokens and platform subdirectories are ignored.""",
    )
    conda_verify_channels = policy_trait(
        Dict, "verify_channels",
        help="""Channel -> the URL its repodata is read from (your mirror of it; empty: the channel's
        own URL). Each record naming the channel must have a file name, sha256, md5 and size that this
        repodata lists (rule conda.not-from-channel), read with py-rattler and cached by HTTP ETag.
        An unreadable repodata refuses the image while the rule is enforced, and is asked again at the
        next spawn. Example: ``{"conda-forge": "https://conda-mirror.example.org/conda-forge"}``.
        Empty: records are not verified.""",
    )
    conda_verify_files = policy_trait(
        Bool, "verify_files",
        help="""Compare each file of the environments (in site-packages: Python sources, compiled extensions,
        data; elsewhere: ``bin/`` scripts, libraries) with the sha256 its conda record's ``paths_data``
        lists (rule conda.file-modified): a package patched after install is refused. For the records of a
        ``conda_verify_channels`` channel the sha256 comes from the package's own ``info/paths.json`` on that
        channel instead (an edited record does not help). Files conda rewrites for the prefix and links are
        skipped. The files are hashed from the image's layers (``admission_read_layers``), or as Docker's
        archive API streams each site-packages and each other top-level directory of the prefix holding
        them (slower: see benchmarks/README.md); decisions stay cached by image and policy.""",
    )
    conda_attestation_keys = policy_trait(
        Dict, "attestation_keys", item=lambda: Union([Unicode(), List(Union([Unicode(), Dict()]))]),
        help="""Channel of ``conda_verify_channels`` -> the signers its publish attestations must be signed by
        (rules conda.attestation-missing, -untrusted, -wrong-channel): a PEM file of public keys, or a list of
        PEM files and Sigstore identities ``{"issuer": OIDC issuer URL, "subject": certificate identity}``
        (verified with the ``sigstore`` package against ``admission_signature_trusted_root``). Each record of
        the channel needs a CEP 27 publish attestation (in-toto statement, predicate type
        ``https://schemas.conda.org/attestations-publish-1.schema.json``, the package's file name and sha256,
        ``targetChannel`` the channel) in a DSSE envelope signed by one of them, served as CEP 50
        describes (``attestations_sha256`` in repodata, the ``.sigs.<sha256>`` sidecar beside the package).
        Example: ``{"conda-forge": "/etc/jupyterhub/conda-forge-publishers.pem", "internal":
        [{"issuer": "https://token.actions.githubusercontent.com", "subject":
        "https://github.com/example/feedstock/.github/workflows/publish.yml@refs/heads/main"}]}``.
        Empty: not checked.""",
    )
    conda_channel_alias = policy_trait(
        Unicode, "channel_alias",
        help="Base URL that channel names are resolved against, as conda's ``channel_alias``.",
    )
    conda_channel_mirrors = policy_trait(
        Dict, "channel_mirrors",
        help="""Mirror URL -> the channel it mirrors, so packages from a mirror count as the channel.

        Example: ``{"https://conda-mirror.example.org/conda-forge": "conda-forge"}``.""",
    )
    conda_python_eol_warn_days = policy_trait(
        Int, "python_eol_warn_days",
        help="Warn this many days before the environment's Python reaches end of life (rule conda.python-eol-soon).",
    )
    conda_python_eol_dates = policy_trait(
        Dict, "python_eol_dates",
        help="""End-of-life dates that override or extend the shipped table, e.g. ``{"3.10": "2026-10-31"}``.""",
    )
    conda_denied_packages = policy_trait(
        List, "denied_packages",
        help="""MatchSpecs of packages that must not be installed (rule conda.package-denied),
        e.g. ``["pycrypto", "openssl <3", "conda-forge::evil-pkg"]``. A channel in the spec is compared too.""",
    )
    conda_required_packages = policy_trait(
        List, "required_packages",
        help="""MatchSpecs that must each match an installed package (rule conda.package-required),
        e.g. ``["jupyterhub >=6,<7", "python >=3.11"]``.""",
    )
    conda_lock_file = policy_trait(
        Unicode, "lock_file",
        help="""Lock file the environment must match exactly (rule conda.lock-mismatch): a
        ``conda list --explicit --md5`` file, a conda-lock file or a pixi.lock. Empty: none.""",
    )
    conda_lock_environment = policy_trait(Unicode, "lock_environment",
                                          help="Environment of a pixi.lock/conda-lock file.")
    conda_lock_platform = policy_trait(Unicode, "lock_platform", help="Platform of a pixi.lock/conda-lock file.")
    admission_library_paths = policy_trait(
        List, "library_paths",
        help="""Directories an image's ``LD_LIBRARY_PATH`` may name (rule python.import-env).

        The default is what NVIDIA's CUDA images set: the NVIDIA runtime mounts the host's
        driver libraries there. Any other directory (and any ``LD_PRELOAD``, ``LD_AUDIT``,
        ``PYTHONPATH``, ``PYTHONHOME``, ``PYTHONSTARTUP``, ``PYTHONUSERBASE``) is a finding.""",
    )
    conda_pip_allowlist = policy_trait(
        List, "pip_allowlist",
        help="Distributions pip may have installed into the conda environment (rule conda.pip-pollution).",
    )
    conda_guard = Bool(
        True, config=True,
        help="""Write the channel policy into each container as a read-only system ``/etc/conda/.condarc``
        (``channels``, ``channel_alias`` and ``allowlist_channels``, each ``#!final``) and the pip
        index settings as ``/etc/pip.conf`` and ``<prefix>/pip.conf``, so environments users create stay on
        approved channels. Needs ``conda_allowed_channels`` or ``pip_index_url``. HardenedDockerSpawner only.""",
    )
    conda_drift_audit = Bool(
        True, config=True,
        help="""At stop, write the changes under ``conda_prefix`` since the image to the audit log. They
        are read from the container's overlay2 upper directory when ``admission_read_layers`` is on and
        the hub can read the daemon's data root (only the changes are walked), else with ``docker diff``
        (which walks the whole image on many hosts: seconds for a large one, and the stop waits).
        HardenedDockerSpawner only: a swarm manager cannot diff a task's container.""",
    )
    pip_index_url = Unicode("", config=True, help="pip ``index-url`` for containers (runtime guard). Empty: pip's default.")
    pip_extra_index_urls = List(Unicode(), config=True, help="pip ``extra-index-url`` values for containers.")

    scan_report_dir = policy_trait(
        Unicode, "scan_report_dir",
        help="""Directory of Trivy, Grype or CycloneDX JSON reports from CI, named with the image digest
        (e.g. ``sha256-<hex>.trivy.json``). Empty: no scanner gate. Set: an image without a report is
        denied (rule scan.report-missing; set it to ``audit`` to warn instead).""",
    )
    scan_deny_severity = policy_trait(
        Unicode, "scan_deny_severity",
        help="Deny images with vulnerabilities at or above this severity: low, medium, high or critical.",
    )
    scan_cve_allowlist = policy_trait(
        Dict, "scan_cve_allowlist",
        help="""Vulnerabilities accepted until a date: ``{"CVE-2024-12345": "2026-12-31"}``. After the date
        the vulnerability blocks again.""",
    )

    # ---- signatures, registry reads, OSV (docs/image-signing.md) -----------------------
    admission_signature_policy = policy_trait(
        List, "signature_policy", item=Dict,
        help="""Who may sign which images (rules image.signature, image.signature-missing,
        image.signature-unverifiable). Empty: signatures are not checked.

        A list of entries; the first whose ``images`` pattern (or list of patterns, as in
        ``admission_image_allowlist``) matches the image's registry/repository applies. An entry
        names public keys (PEM files) for cosign key-based signatures, Sigstore keyless
        identities (``{"issuer": ..., "subject": ...}``), or ``"allow_unsigned": true``. An image
        that matches no entry is refused. Example: ``[{"images": "registry.example.org/jupyter/**",
        "keys": ["/etc/jupyterhub/cosign.pub"]}]``.""",
    )
    admission_provenance_policy = policy_trait(
        List, "provenance_policy", item=Dict,
        help="""Which SLSA build provenance images must carry (rules provenance.missing,
        provenance.unverifiable, provenance.untrusted-signer, provenance.builder-not-allowed,
        provenance.source-not-allowed, provenance.level-too-low). Empty: provenance is not checked.

        A list of entries; the first whose ``images`` pattern matches the image's registry/repository
        applies, and images no entry covers are not checked. ``builders`` maps each accepted builder id
        to the SLSA Build level (1, 2 or 3) you declare it meets; ``sources`` lists accepted
        ``repository@ref`` patterns; ``build_types`` accepted build types (empty: any); ``min_level`` the
        level required (default 1). The provenance must be an in-toto statement for the image digest
        (predicate https://slsa.dev/provenance/v1 or v0.2) signed by a key or identity that
        ``admission_signature_policy`` names for the image. Example: ``[{"images": "registry.example.org/jupyter/**",
        "builders": {"https://ci.example.org/builder@v1": 3}, "sources":
        ["https://git.example.org/jupyter/images@refs/heads/main"], "min_level": 3}]``.""",
    )
    admission_signature_trusted_root = policy_trait(
        Unicode, "signature_trusted_root",
        help="""Sigstore ``trusted_root.json`` that keyless signatures, attestations and conda publish
        attestations (Sigstore identities) are verified against: the public-good instance's, refreshed
        from its TUF repository, or a private Sigstore deployment's. Empty: the public-good trust root
        shipped with the ``sigstore`` package (it is not refreshed over the network at spawn; upgrade the
        package or point this at a file you refresh). A file that cannot be read or used stops the hub.""",
    )
    admission_registry_plain_http = policy_trait(
        List, "registry_plain_http",
        help="""Registries (``host:port`` as in image names) that signatures are read from over plain
        HTTP instead of HTTPS, like Docker's ``insecure-registries``. Example: ``["127.0.0.1:5000"]``.""",
    )
    admission_registry_timeout = policy_trait(
        Float, "registry_timeout",
        help="Seconds each registry request for signatures may take before the image counts as unverifiable.",
    )
    admission_registry_auth_file = policy_trait(
        Unicode, "registry_auth_file",
        help="""Docker ``config.json`` with credentials for reading signatures from private registries.
        Empty: the hub user's ``~/.docker/config.json`` when it exists.""",
    )
    scan_attestation_max_age_days = policy_trait(
        Int, "scan_attestation_max_age_days",
        help="""Read signed vulnerability scans from the image's registry and accept the newest when it is at
        most this many days old (rule scan.report-stale). 0: scan attestations are not read.

        A scan is a cosign vulnerability attestation (predicate
        https://cosign.sigstore.dev/attestation/vuln/v1, the Trivy, Grype or CycloneDX result in
        ``scanner.result``) or a CycloneDX attestation (https://cyclonedx.org/bom) for the image digest,
        signed by a key that ``admission_signature_policy`` names for the image. Its vulnerabilities count
        against ``scan_deny_severity`` and ``scan_cve_allowlist`` like a report file's.""",
    )
    scan_osv_file = policy_trait(
        Unicode, "scan_osv_file",
        help="""Local vulnerability list in OSV JSON format (a list of entries or ``{"vulns": [...]}``),
        matched against the image's SBOM packages (pkg:conda, pkg:pypi, pkg:deb): a scanner gate that
        needs no Trivy or Grype report. Matches count against ``scan_deny_severity`` and
        ``scan_cve_allowlist``. Empty: none.""",
    )

    admission_vsa_key_file = Unicode(
        "", config=True,
        help="""Private key (PEM: Ed25519, ECDSA or RSA, unencrypted) with which the hub signs a SLSA
        Verification Summary Attestation of each image it decides on: an in-toto statement for the image
        digest (predicate https://slsa.dev/verification_summary/v1) in a DSSE envelope, with the result
        (PASSED, or FAILED for a refused image), the SLSA Build level verified and the policy digest. It is
        named in the audit log, shown on the operations page and served at
        ``/hub/api/hardened-spawner/vsa/sha256:<hex>``; ``hardened-spawner check-image --attest`` prints it.
        The file must be owned by the hub's user (or root) and readable by its owner only (chmod 600).
        Empty: no summaries. Make one with ``openssl genpkey -algorithm ed25519 -out FILE``.""",
    )
    admission_vsa_verifier_id = Unicode(
        "", config=True,
        help="""The verifier id (``verifier.id``, a URI) the summaries name, e.g. the hub's URL
        ``https://hub.example.org/``; needed with ``admission_vsa_key_file``. Systems that rely on the
        summaries check it together with the public key.""",
    )

    # ---- built from the traits --------------------------------------------------------
    @classmethod
    def policy_traits(cls):
        """``{Policy field: trait name}``."""
        return {t.metadata["policy"]: name for name, t in cls.class_traits(policy=lambda v: v is not None).items()}

    def admission_policy(self):
        """The immutable :class:`Policy` these settings describe."""
        fields = self.policy_traits()
        return Policy(**{field: _frozen(getattr(self, name)) for field, name in fields.items()})

    def guard_files(self, policy=None):
        """``{path: text}`` of the conda/pip policy files written into containers (empty: none)."""
        if not (self.admission_enabled and self.conda_guard):
            return {}
        return guard.policy_files(policy or self.admission_policy(), self.pip_index_url,
                                  tuple(self.pip_extra_index_urls))

    def admission_problems(self, prefix):
        """Configuration errors in the admission settings, as ``(setting, message)``. No file I/O."""
        if not self.admission_enabled:
            return []
        names, policy = self.policy_traits(), self.admission_policy()
        problems = [(prefix + names[field], message)
                    for field, message in policy.problems() + signing.policy_problems(policy, "")
                    + provenance.policy_problems(policy, "")]
        if self.admission_vsa_key_file and "://" not in self.admission_vsa_verifier_id:
            problems.append((f"{prefix}admission_vsa_verifier_id", "must be the URI the hub's verification "
                             f"summaries name as their verifier (e.g. the hub's URL), not "
                             f"{self.admission_vsa_verifier_id!r}"))
        return problems

    def admission_file_problems(self, prefix):
        """Problems with the configured lock file and report directory (at hub start and in CI)."""
        if not self.admission_enabled:
            return []
        names, policy = self.policy_traits(), self.admission_policy()
        key = self.admission_vsa_key_file
        return [(prefix + names[field], message)
                for field, message in policy.file_problems() + evidence.file_problems(policy, "")] + [
            (f"{prefix}admission_vsa_key_file", m) for m in (vsa_issuer.key_problems(key) if key else ())]

    def summary_issuer(self):
        """The :class:`~...admission.vsa_issuer.Issuer` of this hub's verification summaries."""
        return vsa_issuer.Issuer(self.admission_vsa_key_file, self.admission_vsa_verifier_id)
