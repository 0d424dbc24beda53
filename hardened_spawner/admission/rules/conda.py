"""Conda environment policy: on the installed records of each environment of the image. Pure: no I/O.

The environment at ``conda_prefix`` (the base, which runs the notebook) and
those under ``<prefix>/envs`` get the channel, end-of-life, denied-package,
pip and record rules, and findings name a non-base environment; required
packages and the lock file apply to the base.
"""

import os
import posixpath

from .. import channels, conda, conda_attestations, locks, ownership
from .base import Family, listing
from .python import owners

FAMILY = Family("conda", "Conda environment policy", "admission-conda.md", needs=("image",))
rule = FAMILY.rule


def _envs(s):
    """``(environment, where)`` of every environment with conda-meta; ``where`` names a non-base one."""
    return [(env, f" in {env.label()}" if env.name else "") for env in s.inputs.envs if env.records is not None]


def _base_records(s):
    """The records of the environment at the prefix, None when there is none."""
    return s.inputs.envs[0].records if s.inputs.envs else None


def _absent(s):
    return f"The image has no conda environment at {s.policy.conda_prefix} (no conda-meta directory)."


def _mirrors(s):
    return conda.normalize_mirrors(s.policy.channel_mirrors, s.policy.channel_alias)


def _lock_broken(s):
    return isinstance(s.context.lock, locks.LockError)


@rule("conda.record-invalid", "high", "enforce", "conda-meta record cannot be read",
      "Rebuild the environment with conda/mamba so every conda-meta record is complete JSON.",
      protects="a `conda-meta` record that is not JSON or lacks name/version/build: the environment cannot be checked")
def record_invalid(s):
    for env, _ in _envs(s):
        for name, problem in env.record_problems:
            yield f"{posixpath.join(env.prefix, 'conda-meta', name)}: {problem}."


@rule("conda.channel-not-allowed", "high", "enforce", "package from a channel that is not allowed",
      "Install the package from an allowed channel (or a mirror the hub admin has declared).",
      protects="packages from channels nobody approved (typosquatted or compromised channels)",
      when="`conda_allowed_channels` is set")
def channel_not_allowed(s):
    policy, mirrors = s.policy, s.once(_mirrors)
    if not policy.allowed_channels:
        return
    allowed = conda.allowed_set(policy.allowed_channels, policy.channel_alias, mirrors)
    for env, where in _envs(s):
        bad = conda.disallowed_channels(env.records, allowed, policy.channel_alias, mirrors)
        if bad:
            yield (f"Packages{where} from channels that are not allowed ({', '.join(sorted(allowed))}): "
                   f"{listing(bad)}.")


def _eol(s):
    """``[(kind, sentence)]`` for each environment's Python: kind ``eol`` or ``soon``."""
    policy = s.policy
    found = [(conda.python_eol(env.records, s.today, policy.python_eol_warn_days, policy.python_eol_dates), where)
             for env, where in _envs(s)]
    return [(eol[0], eol[1] + where + ".") for eol, where in found if eol]


@rule("conda.not-from-channel", "high", "enforce", "package record the channel it names does not list",
      "Install the package from the channel (the hub admin's mirror), not a copy with its record edited.",
      protects="a record that names an approved channel for a package, or a hash, that channel does not have: "
               "`channel`, `url` and `sha256` in `conda-meta` are text the image builder wrote, checked here "
               "against the channel's own repodata (fetched with py-rattler from the admin's mirror); a mirror "
               "that cannot be read refuses the image (set the rule to audit to admit it then)",
      when="`conda_verify_channels` is set", needs=("image", "context"))
def not_from_channel(s):
    policy, listed = s.policy, s.context.repodata
    if not policy.verify_channels or listed is None:
        return
    if isinstance(listed, channels.RepodataError):
        yield f"Records cannot be verified against their channel: {listed}."
        return
    wanted = channels.verified(policy)
    for env, where in _envs(s):
        bad = conda.not_from_channel(env.records, listed, wanted, policy.channel_alias, s.once(_mirrors))
        if bad:
            yield f"Records{where} that their channel does not list: {listing(bad)}."


def _attestations(s):
    """``{status: [sentence]}`` of the records of the channels with attestation keys (an error: all missing)."""
    policy, found = s.policy, s.context.attestations
    if not policy.attestation_keys or found is None:
        return {}
    if isinstance(found, channels.RepodataError):
        return {conda_attestations.MISSING: [f"attestations cannot be checked: {found}"]}
    mirrors, out = s.once(_mirrors), {}
    for env, where in _envs(s):
        for record in env.records:
            status, why = conda_attestations.of_record(record, found, policy.channel_alias, mirrors) or (None, "")
            if status not in (None, conda_attestations.ATTESTED):
                out.setdefault(status, []).append(f"{record.label()}{where}: {why}")
    return out


def _attestation_rule(status, rule_id, title, remediation, protects):
    @rule(rule_id, "high", "enforce", title, remediation, protects=protects,
          when="`conda_attestation_keys` is set", needs=("image", "context"))
    def check(s):
        bad = s.once(_attestations).get(status)
        if bad:
            yield f"Packages without a trusted publish attestation ({status}): {listing(bad)}."
    return check


attestation_missing = _attestation_rule(
    conda_attestations.MISSING, "conda.attestation-missing", "package without a publish attestation",
    "Publish the package with a signed attestation (CEP 27) to the channel, or have the channel serve it (CEP 50).",
    "a package of a channel whose publishers sign: no `attestations_sha256` in its repodata, or a sidecar that "
    "cannot be fetched (a retrieval failure is never taken for an unsigned package that is fine)")
attestation_untrusted = _attestation_rule(
    conda_attestations.UNTRUSTED, "conda.attestation-untrusted",
    "publish attestation not signed by a trusted key or identity",
    "Sign the package's attestation with a key or Sigstore identity listed in conda_attestation_keys for its "
    "channel.",
    "an attestation no trusted key or Sigstore identity signed (another subject or issuer, a certificate from "
    "another trust root), one of another file or hash, or a sidecar that does not hash to what the repodata "
    "advertises")
attestation_wrong_channel = _attestation_rule(
    conda_attestations.WRONG_CHANNEL, "conda.attestation-wrong-channel", "publish attestation names another channel",
    "Install the package from the channel its publisher published it to.",
    "a package its trusted publisher published to another channel (`targetChannel`), copied into this one")


@rule("conda.file-modified", "high", "enforce", "installed file differs from its package",
      "Rebuild the image without patching installed packages; ship changes as a package of their own.",
      protects="a package patched after install (an edited `tornado/__init__.py`): the record, the lock file and "
               "the channel all still say the original; each installed file (Python sources, compiled "
               "extensions, data, `bin/` scripts) is compared with the sha256 its record's "
               "`paths_data` lists, or, for a record of a `conda_verify_channels` channel, the sha256 its package's "
               "own `info/paths.json` on that channel lists (so an edited `paths_data` does not help)",
      when="`conda_verify_files` is on", needs=("image", "site-packages", "context"))
def file_modified(s):
    if not s.policy.verify_files:
        return
    packages = s.context.package_files
    if isinstance(packages, channels.RepodataError):
        yield f"Installed files cannot be compared with their packages: {packages}."
        return
    for env, where in _envs(s):
        rel = ownership.site_rel(env)
        own = {}
        for record in env.records:
            found = ownership.package_of(record, packages, s.policy.channel_alias, s.once(_mirrors))
            if found is not None:
                own[record.source] = tuple((ownership.installed(p, rel), h) for p, h in found.hashes)
        bad = conda.modified_files(env.records, env.prefix, s.facts.hashes, own, (env.prefix,))
        if bad:
            yield f"Installed files{where} differ from their packages: {listing(bad)}."


@rule("conda.python-eol", "high", "enforce", "Python is past its end of life",
      "Rebuild the image with a supported Python version.",
      protects="a Python past its end of life gets no security fixes (3.9 ended 2025-10-31, PEP 596)")
def python_eol(s):
    yield from (sentence for kind, sentence in s.once(_eol) if kind == "eol")


@rule("conda.python-eol-soon", "medium", "audit", "Python reaches its end of life soon",
      "Plan a rebuild with a newer Python before the end-of-life date.",
      protects="a Python that reaches its end of life within `conda_python_eol_warn_days` (180 by default): "
               "time to plan the rebuild",
      when="`conda_python_eol_warn_days` > 0")
def python_eol_soon(s):
    yield from (sentence for kind, sentence in s.once(_eol) if kind == "soon")


@rule("conda.package-denied", "high", "enforce", "denied package installed",
      "Remove the package from the environment.",
      protects="known-bad packages (`pycrypto`, `openssl <3`, ...)",
      when="`conda_denied_packages` is set")
def package_denied(s):
    for env, where in _envs(s):
        bad = conda.denied(env.records, s.policy.denied_packages, s.policy.channel_alias, s.once(_mirrors))
        if bad:
            yield f"Denied packages are installed{where}: {listing(bad)}."


@rule("conda.package-required", "high", "enforce", "required package missing or wrong version",
      "Install a version of the package that matches the required spec.",
      protects="images the hub cannot run (`jupyterhub` incompatible with the hub); an image without a conda "
               "environment at `conda_prefix` has none of them",
      when="`conda_required_packages` is set")
def package_required(s):
    records, required = _base_records(s), s.policy.required_packages
    if records is None:
        if required:
            yield _absent(s)
        return
    bad = conda.missing_required(records, required, s.policy.channel_alias, s.once(_mirrors))
    if bad:
        yield f"Required packages are missing: {listing(bad)}."


@rule("conda.lock-mismatch", "high", "enforce", "installed packages differ from the lock file",
      "Build the environment from the lock file exactly (conda create --file / conda-lock install / pixi install --frozen).",
      protects="drift from the reviewed lock file: missing, extra, other version/build, other md5; an image without "
               "a conda environment at `conda_prefix` does not match it",
      when="`conda_lock_file` is set", needs=("image", "context"))
def lock_mismatch(s):
    records, lock = _base_records(s), s.context.lock
    if _lock_broken(s):
        return
    if records is None:
        if s.policy.lock_file:
            yield _absent(s)
        return
    diff = locks.differences(records, lock) if lock is not None else ()
    if diff:
        yield (f"The environment differs from {os.path.basename(s.policy.lock_file)} "
               f"in {len(diff)} packages: {listing(diff)}.")


@rule("conda.lock-invalid", "high", "enforce", "the lock file cannot be read",
      "Fix or regenerate the lock file configured by the hub admin.",
      protects="the configured lock file broke after the hub started",
      when="`conda_lock_file` is set", needs=("context",))
def lock_invalid(s):
    if _lock_broken(s):
        yield str(s.context.lock)


@rule("conda.pip-pollution", "medium", "audit", "pip-installed packages in the conda environment",
      "Install the packages with conda, or add them to the pip allowlist if pip is intended.",
      why_audit="This warns by default: packages pip installed at build time grant no privilege, but they "
                "bypass the conda channel policy and lock files; set the rule to enforce where every "
                "package must come from an approved channel.",
      protects="`*.dist-info`/`*.egg-info` in site-packages that no conda record owns (what conda itself calls "
               "pip-installed) and `conda_pip_allowlist` does not list: they bypass the channel policy and lock "
               "file, but grant no privilege, and the official single-user image pip-installs `jupyterhub` on top "
               "of conda",
      needs=("image", "site-packages", "context"))
def pip_pollution(s):
    for env, where in _envs(s):
        records = s.once(owners)[env.prefix]
        polluted = conda.pip_pollution(records, env.prefix, env.site_packages, s.policy.pip_allowlist)
        if polluted:
            yield (f"site-packages{where} has distributions no conda package owns "
                   f"(installed with pip): {listing(polluted)}.")
