"""From image facts and a policy to a :class:`~.model.Decision`.

:func:`prepare` turns the facts read from an image into inputs (parsed conda
records, site-packages listings), which are cached per image digest;
:func:`load_context` reads the admin's lock file and scanner reports (small
file reads, done for every evaluation so a new report counts at once);
:func:`evaluate` is pure and applies every rule of the registry
(:mod:`.rules`); :func:`reference_decision` applies those that need only the
reference, before the image is pulled.
"""

import hashlib
import json
import posixpath
from dataclasses import dataclass, field

from . import conda, evidence, facts as facts_mod, locks, model, osv, prefixes, reports, rules, sbom
from .policy import file_identity


@dataclass
class Environment:
    """One conda environment of the image: the prefix itself, ``<prefix>/envs/<name>``, or a prefix found
    elsewhere on the filesystem (its name is its path)."""

    prefix: str
    name: str = ""                       # "" for the environment at the conda prefix
    records: list | None = None          # None: no conda-meta directory
    record_problems: list = field(default_factory=list)
    site_packages: dict = field(default_factory=dict)

    def label(self):
        if self.name == self.prefix:
            return f"environment {self.prefix} (outside the conda prefix)"
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
    repodata: object = None              # channels.load: {(channel, subdir, file): Listed}, a RepodataError, or None
    attestations: object = None          # channels.load_attestations: {(channel, subdir, file): Attested}, an error
    package_files: object = None         # channels.load_package_files: {(channel, subdir, file): hashes}, an error


def plan_for(policy):
    return facts_mod.ReadPlan(
        sshd_config=policy.sshd_config,
        setuid_paths=tuple(policy.setuid_paths),
        conda_prefix=policy.conda_prefix,
        site_packages=any("site-packages" in r.needs for r in rules.RULES.values() if policy.mode(r.id) != "off"),
        conda_envs=tuple(policy.conda_envs),
        find_prefixes="*" in policy.conda_envs,
        hash_files=policy.verify_files and policy.mode("conda.file-modified") != "off",
        nested=policy.mode("python.unowned-module") != "off",
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
        for directory in prefixes.site_packages_dirs(prefix, facts.children(meta)):
            if facts.roots.get(directory):
                env.site_packages[directory] = facts.children(directory)
    return env


def prepare(facts, plan):
    """Parse what :func:`facts.read_facts` returned (CPU work, run it off the event loop)."""
    inputs = Inputs(facts)
    inputs.homes_ssh = tuple(posixpath.join(h, ".ssh") for h in prefixes.homes(facts.files.get("/etc/passwd", b"")))
    if plan.conda_prefix:
        inputs.envs.append(_environment(facts, plan.conda_prefix, ""))
        envs = posixpath.join(plan.conda_prefix, "envs")
        for name in facts.children(envs):
            env = _environment(facts, posixpath.join(envs, name), name)
            if env.records is not None:
                inputs.envs.append(env)
        for prefix in facts.prefixes:
            env = _environment(facts, prefix, prefix)
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


def reference_decision(policy, ref):
    """The :class:`~.model.Decision` of the rules that need nothing but the reference: call it before pulling.

    ``policy`` is the admission :class:`~.policy.Policy`; ``ref`` the image
    reference the spawn asks for, as it will later be pulled and passed to
    :func:`evaluate`. Runs the rules of the registry that need no more than the
    reference (:data:`.rules.REFERENCE_RULES`: a reference Docker would refuse,
    the allowlist, ``:latest``, digest pinning) in the policy's rule modes,
    exactly as :func:`evaluate` runs them: its findings are the ones
    :func:`evaluate` reports for these rules, and :func:`evaluate` reports
    them again (show the warnings of one of the two decisions, not both).

    Pure: it reads nothing and asks no daemon or registry, so a spawner can
    refuse a reference (an image from a registry or ``host:port`` the
    allowlist does not name, asked for through ``allowed_images = "*"``; a
    reference that is not an image name) before anything is pulled. Not
    admitted: refuse the spawn with :meth:`~.model.Decision.explain` (the
    findings are :class:`~.model.Finding` with ``rule``, ``severity``,
    ``action``, ``message``, ``remediation``). Admitted: says nothing of the
    image's content, which :func:`evaluate` checks after the pull. The
    decision's ``digest``, ``signature`` and ``sbom`` are empty. Never raises
    for a bad reference (that is the ``image.reference-invalid`` finding).
    Call it only when admission is enabled, as :func:`evaluate`.
    """
    return model.decision(rules.findings(rules.RULES.values(), rules.Reference(policy, ref)))


def decided_digest(image_info, image):
    """What a decision is about: the image's ``repo@sha256:`` in the reference's repository (the pinned
    digest when the reference pins one), else its first RepoDigest, else its id."""
    repo_digests = image_info.get("RepoDigests") or []
    if image is not None:
        found = evidence.registry_digests(image.name, image_info, image.digest)
        for entry in repo_digests:
            if found and entry.endswith("@" + found[0]) and evidence.registry_digests(image.name,
                                                                                      {"RepoDigests": [entry]}):
                return entry
    return (repo_digests or [None])[0] or image_info.get("Id", "")


def evaluate(policy, ref, image_info, inputs, context, today):
    """Apply every rule of the registry to the image (in ``policy``'s modes); returns a Decision."""
    subject = rules.Image(policy, ref, image_info, inputs, context, today)
    verdict = subject.once(rules.signature.verdict)
    built = subject.once(rules.provenance.verdict)
    digest = decided_digest(image_info, subject.image)
    return model.decision(rules.findings(rules.RULES.values(), subject), digest,
                          signature=verdict.message if verdict else "",
                          provenance=built.message if built else "",
                          level=built.level if built else 0, inputs=built.sources if built else (),
                          sbom=sbom.serial_number(image_info.get("Id", ""), subject.once(rules.scan.packages)))
