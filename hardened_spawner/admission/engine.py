"""From image facts and a policy to a :class:`~.model.Decision`.

:func:`prepare` turns the facts read from an image into inputs (parsed conda
records, site-packages listings), which are cached per image digest;
:func:`load_context` reads the admin's lock file and scanner reports (small
file reads, done for every evaluation so a new report counts at once);
:func:`evaluate` is pure and applies every rule.
"""

import dataclasses
import hashlib
import json
import os
import posixpath
from dataclasses import dataclass, field

from . import checks, conda, facts as facts_mod, locks, osv, reports, sbom, signing
from .model import Violations
from .policy import file_identity, image_pattern
from ..decisions.reference import parse


@dataclass
class Environment:
    """One conda environment of the image: the prefix itself or ``<prefix>/envs/<name>``."""

    prefix: str
    name: str = ""                       # "" for the environment at the conda prefix
    records: list | None = None          # None: no conda-meta directory
    record_problems: list = field(default_factory=list)
    site_packages: dict = field(default_factory=dict)

    def label(self):
        return f"environment {self.name!r} ({self.prefix})" if self.name else f"environment {self.prefix}"


@dataclass
class Inputs:
    facts: facts_mod.ImageFacts
    envs: list = field(default_factory=list)   # the base environment first
    homes_ssh: tuple = ()

    @property
    def records(self):
        """The records of the environment at the conda prefix (None when it has none)."""
        return self.envs[0].records if self.envs else None


@dataclass(frozen=True)
class Context:
    lock: object = None                  # list of Locked, a LockError, or None (no lock configured)
    vulns: tuple = ()
    report_problems: tuple = ()
    report_files: tuple = ()
    signatures: object = None            # evidence.Evidence, or None (no trust policy)
    osv: object = None                   # OSV entries, an OsvError, or None (no OSV file)


def plan_for(policy):
    return facts_mod.ReadPlan(
        sshd_config=policy.sshd_config,
        setuid_paths=tuple(policy.setuid_paths),
        conda_prefix=policy.conda_prefix,
        site_packages=policy.mode("conda.pip-pollution") != "off",
        conda_envs=tuple(policy.conda_envs),
        extra_files=(sbom.DPKG_STATUS,),
    )


def _environment(facts, prefix, name):
    env = Environment(prefix, name)
    meta = posixpath.join(prefix, "conda-meta")
    if facts.roots.get(meta):
        raw = {posixpath.basename(p): data for p, data in facts.files.items()
               if posixpath.dirname(p) == meta and p.endswith(".json")}
        too_big = [posixpath.basename(p) for p, e in facts.under(meta).items()
                   if posixpath.dirname(p) == meta and p.endswith(".json") and e.type == "file" and p not in facts.files]
        env.records, env.record_problems = conda.parse_records(raw)
        env.record_problems += [(n, "too large to read") for n in too_big]
        for directory in facts_mod.site_packages_dirs(prefix, facts.children(meta)):
            if facts.roots.get(directory):
                env.site_packages[directory] = facts.children(directory)
    return env


def prepare(facts, plan):
    """Parse what :func:`facts.read_facts` returned (CPU work, run it off the event loop)."""
    inputs = Inputs(facts)
    inputs.homes_ssh = tuple(posixpath.join(h, ".ssh") for h in facts_mod.homes(facts.files.get("/etc/passwd", b"")))
    if plan.conda_prefix:
        inputs.envs.append(_environment(facts, plan.conda_prefix, ""))
        envs = posixpath.join(plan.conda_prefix, "envs")
        for name in facts.children(envs):
            env = _environment(facts, posixpath.join(envs, name), name)
            if env.records is not None:
                inputs.envs.append(env)
    return inputs


def image_digests(image_info):
    """The hex digests that identify the image: its id and its repo digests."""
    values = [image_info.get("Id") or ""] + list(image_info.get("RepoDigests") or [])
    return sorted({v.rsplit("sha256:", 1)[1] for v in values if "sha256:" in v})


def load_context(policy, digests, signatures=None):
    """Read the lock file, the scanner reports for ``digests`` and the OSV list (blocking file I/O).

    ``signatures``: what :func:`.evidence.load` read from the registry for this admission."""
    lock = None
    if policy.lock_file:
        try:
            lock = locks.load(policy.lock_file, policy.lock_environment, policy.lock_platform)
        except locks.LockError as e:
            lock = e
    advisories = None
    if policy.scan_osv_file:
        try:
            advisories = tuple(osv.load(policy.scan_osv_file))
        except osv.OsvError as e:
            advisories = e
    if not policy.scan_report_dir:
        return Context(lock, signatures=signatures, osv=advisories)
    vulns, problems, files = reports.load(policy.scan_report_dir, digests)
    return Context(lock, tuple(vulns), tuple(problems), tuple(files), signatures, advisories)


def context_fingerprint(policy, digests):
    """Changes whenever the lock file or a report for ``digests`` changes (cheap: stat only)."""
    parts = [file_identity(policy.lock_file)]
    if policy.scan_report_dir:
        try:
            files = reports.find(policy.scan_report_dir, digests)
        except reports.ReportError as e:
            files = [str(e)]
        parts += [(f, file_identity(f)) for f in files]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _reference(policy, ref, out):
    image = parse(ref)
    if policy.image_allowlist and not any(image_pattern(p).match(image.name) for p in policy.image_allowlist):
        out.add("image.not-allowlisted", f"{image.name} matches none of the allowed patterns "
                f"({', '.join(policy.image_allowlist)}).")
    if not image.pinned and image.tag in (None, "latest"):
        out.add("image.tag-latest", f"{ref} uses {'the :latest tag' if image.tag else 'no tag (so :latest)'}, "
                "which can point at different content tomorrow.")
    if policy.require_digest and not image.pinned:
        out.add("image.digest-required", f"{ref} is referenced by tag; this hub requires name@sha256:<digest>.")


def _conda(policy, inputs, context, today, out):
    base = inputs.envs[0] if inputs.envs else Environment(policy.conda_prefix)
    if base.records is None:
        absent = f"The image has no conda environment at {policy.conda_prefix} (no conda-meta directory)."
        if policy.required_packages:
            out.add("conda.package-required", absent)
        if policy.lock_file and not isinstance(context.lock, locks.LockError):
            out.add("conda.lock-mismatch", absent)
    if isinstance(context.lock, locks.LockError):
        out.add("conda.lock-invalid", str(context.lock))
    mirrors = conda.normalize_mirrors(policy.channel_mirrors, policy.channel_alias)
    for env in inputs.envs:
        if env.records is not None:
            _environment_rules(policy, env, mirrors, today, out, where=f" in {env.label()}" if env.name else "")
    if base.records is not None:  # the notebook runs from the base environment: it must be the locked one
        bad = conda.missing_required(base.records, policy.required_packages, policy.channel_alias, mirrors)
        if bad:
            out.add("conda.package-required", f"Required packages are missing: {checks._listing(bad)}.")
        if context.lock is not None and not isinstance(context.lock, locks.LockError):
            diff = locks.differences(base.records, context.lock)
            if diff:
                out.add("conda.lock-mismatch", f"The environment differs from {os.path.basename(policy.lock_file)} "
                        f"in {len(diff)} packages: {checks._listing(diff)}.")


def _environment_rules(policy, env, mirrors, today, out, where):
    """The rules that apply to every environment; ``where`` names a non-base one in messages."""
    records = env.records
    for name, problem in env.record_problems:
        out.add("conda.record-invalid", f"{posixpath.join(env.prefix, 'conda-meta', name)}: {problem}.")
    if policy.allowed_channels:
        allowed = conda.allowed_set(policy.allowed_channels, policy.channel_alias, mirrors)
        bad = conda.disallowed_channels(records, allowed, policy.channel_alias, mirrors)
        if bad:
            out.add("conda.channel-not-allowed", f"Packages{where} from channels that are not allowed "
                    f"({', '.join(sorted(allowed))}): {checks._listing(bad)}.")
    eol = conda.python_eol(records, today, policy.python_eol_warn_days, policy.python_eol_dates)
    if eol:
        out.add("conda.python-eol" if eol[0] == "eol" else "conda.python-eol-soon", eol[1] + where + ".")
    bad = conda.denied(records, policy.denied_packages, policy.channel_alias, mirrors)
    if bad:
        out.add("conda.package-denied", f"Denied packages are installed{where}: {checks._listing(bad)}.")
    polluted = conda.pip_pollution(records, env.prefix, env.site_packages, policy.pip_allowlist)
    if polluted:
        out.add("conda.pip-pollution", f"site-packages{where} has distributions no conda package owns "
                f"(installed with pip): {checks._listing(polluted)}.")


def _scan(policy, context, packages, today, out):
    vulns = list(context.vulns)
    for problem in context.report_problems:
        out.add("scan.report-invalid", problem + ".")
    if isinstance(context.osv, osv.OsvError):
        out.add("scan.report-invalid", str(context.osv) + ".")
    elif context.osv is not None:  # the OSV list is a source of its own: no report needed beside it
        vulns += osv.match(context.osv, packages)
    elif not context.report_files:
        if not context.report_problems:
            out.add("scan.report-missing", f"No vulnerability report for this image digest in {policy.scan_report_dir}.")
        return
    blocking, expired = reports.over_threshold(vulns, policy.scan_deny_severity,
                                               policy.scan_cve_allowlist, today)
    if blocking:
        note = f" Expired allowlist entries: {', '.join(expired)}." if expired else ""
        out.add("scan.severity-threshold", f"{len(blocking)} vulnerabilities at or above "
                f"{policy.scan_deny_severity}: {checks._listing(v.describe() for v in blocking)}.{note}",
                severity=max((v.severity for v in blocking), key=reports.RANK.get))


def evaluate(policy, ref, image_info, inputs, context, today):
    """Apply every rule of ``policy`` to the image; returns a Decision."""
    out = Violations(dict(policy.modes))
    _reference(policy, ref, out)
    config = image_info.get("Config") or {}
    checks.user_root(config, inputs.facts, out)
    checks.gpu_env(config, out)
    checks.env_secrets(config, policy.env_secret_allowlist, out)
    checks.baked_keys(inputs.facts, inputs.homes_ssh, out)
    checks.sshd_config(inputs.facts, policy.sshd_config, out)
    checks.sudo(inputs.facts, out)
    checks.setuid(inputs.facts, policy.setuid_paths, policy.setuid_allowlist, out)
    checks.image_age(image_info, today, policy.max_image_age_days, out)
    checks.healthcheck(config, out)
    _conda(policy, inputs, context, today, out)
    packages = sbom.packages(inputs, policy.channel_alias)
    if policy.scan_report_dir or policy.scan_osv_file:
        _scan(policy, context, packages, today, out)
    verdict = signing.check(context.signatures, image_info["Id"], out) if context.signatures else None
    digest = (image_info.get("RepoDigests") or [None])[0] or image_info.get("Id", "")
    return dataclasses.replace(out.decide(digest), signature=verdict.message if verdict else "",
                               sbom=sbom.serial_number(image_info.get("Id", ""), packages))
