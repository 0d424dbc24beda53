"""Scanner gates: vulnerability reports from CI and the OSV list, against a severity threshold. Pure: no I/O.

They apply when ``scan_report_dir``, ``scan_osv_file`` or
``scan_attestation_max_age_days`` is set. The reports and the OSV list were
read by :func:`~hardened_spawner.admission.engine.load_context`, the scan
attestations by :func:`~hardened_spawner.admission.evidence.load`; OSV entries
are matched against the image's SBOM packages and attestations judged
(:mod:`..scan_attestations`) here.
"""

from .. import osv, reports, sbom, scan_attestations
from .base import Family, Hit, listing

FAMILY = Family("scan", "Scanner gates", "admission-scanners.md", needs=("image", "context"))
rule = FAMILY.rule


def _gated(s):
    return bool(s.policy.scan_report_dir or s.policy.scan_osv_file or s.policy.scan_attestation_max_age_days)


def attested(s):
    """The :class:`~..scan_attestations.Scans` of the image's signed scan attestations."""
    days = s.policy.scan_attestation_max_age_days
    if not days:
        return scan_attestations.Scans("none")
    return scan_attestations.judge(s.context.signatures, s.image_info["Id"], days, s.today)


def _osv_broken(s):
    return isinstance(s.context.osv, osv.OsvError)


def _no_source(s):
    """No OSV list (not even one that failed to load), no report file and no signed scan for this image."""
    return s.context.osv is None and not s.context.report_files and s.once(attested).status in ("none", "error")


def packages(s):
    """The image's SBOM packages (conda, pip, Debian), as :func:`.sbom.packages` lists them."""
    return sbom.packages(s.inputs, s.policy.channel_alias)


@rule("scan.report-missing", "high", "enforce", "no vulnerability report for this image",
      "Scan the image in CI (trivy/grype) and publish the JSON report to the hub's report directory, or attest "
      "it to the image's registry (cosign attest --type vuln) signed by a key of the trust policy.",
      protects="running an image nobody scanned (fail closed, as Harbor does; set the rule to `audit` to warn); "
               "a registry that cannot be asked for scan attestations",
      when="`scan_report_dir` or `scan_attestation_max_age_days` is set and no `scan_osv_file`")
def report_missing(s):
    if _gated(s) and _no_source(s) and not s.context.report_problems:
        where = f" in {s.policy.scan_report_dir}" if s.policy.scan_report_dir else ""
        registry = s.once(attested).message
        yield f"No vulnerability report for this image digest{where}" + (f"; {registry}" if registry else "") + "."


@rule("scan.report-invalid", "high", "enforce", "vulnerability report cannot be used",
      "Publish a valid Trivy, Grype or CycloneDX JSON report made for this image digest.",
      protects="a report (or OSV list) that is not JSON, not one of the known formats, made for another digest, "
               "without a digest, or with a severity that is not known",
      when="`scan_report_dir` or `scan_osv_file` is set")
def report_invalid(s):
    if not _gated(s):
        return
    for problem in s.context.report_problems:
        yield problem + "."
    if _osv_broken(s):
        yield str(s.context.osv) + "."
    for problem in s.once(attested).problems:
        yield problem + "."


@rule("scan.report-stale", "high", "enforce", "the newest signed scan is older than the policy accepts",
      "Scan the image again (a scheduled CI job) and attest the new result; a scan's age is what it says of the "
      "vulnerabilities known then.",
      protects="an image judged on a scan made before today's vulnerabilities were known: the newest signed scan "
               "attestation is older than `scan_attestation_max_age_days`",
      when="`scan_attestation_max_age_days` is set")
def report_stale(s):
    found = s.once(attested)
    if found.status == "stale":
        yield found.message


@rule("scan.severity-threshold", "high", "enforce", "vulnerabilities at or above the severity threshold",
      "Update the affected packages and rebuild, or allowlist the CVE with an expiry date.",
      protects="known vulnerabilities at or above `scan_deny_severity`, from the reports or from `scan_osv_file` "
               "matched against the image's SBOM, unless `scan_cve_allowlist` accepts them until a date",
      when="`scan_report_dir` or `scan_osv_file` is set")
def severity_threshold(s):
    if not _gated(s) or _no_source(s):
        return
    vulns = list(s.context.vulns) + list(s.once(attested).vulns)
    if s.context.osv is not None and not _osv_broken(s):  # the OSV list is a source of its own
        vulns += osv.match(s.context.osv, s.once(packages))
    policy = s.policy
    blocking, expired = reports.over_threshold(vulns, policy.scan_deny_severity, policy.scan_cve_allowlist, s.today)
    if blocking:
        note = f" Expired allowlist entries: {', '.join(expired)}." if expired else ""
        yield Hit(f"{len(blocking)} vulnerabilities at or above {policy.scan_deny_severity}: "
                  f"{listing(v.describe() for v in blocking)}.{note}",
                  max((v.severity for v in blocking), key=reports.RANK.get))
