"""Scanner gates: vulnerability reports from CI and the OSV list, against a severity threshold. Pure: no I/O.

They apply when ``scan_report_dir`` or ``scan_osv_file`` is set. The reports
and the OSV list were read by :func:`~hardened_spawner.admission.engine.load_context`;
OSV entries are matched against the image's SBOM packages here.
"""

from .. import osv, reports, sbom
from .base import Family, Hit, listing

FAMILY = Family("scan", "Scanner gates", "admission-scanners.md", needs=("image", "context"))
rule = FAMILY.rule


def _gated(s):
    return bool(s.policy.scan_report_dir or s.policy.scan_osv_file)


def _osv_broken(s):
    return isinstance(s.context.osv, osv.OsvError)


def _no_source(s):
    """No OSV list (not even one that failed to load) and no report file for this image."""
    return s.context.osv is None and not s.context.report_files


def packages(s):
    """The image's SBOM packages (conda, pip, Debian), as :func:`.sbom.packages` lists them."""
    return sbom.packages(s.inputs, s.policy.channel_alias)


@rule("scan.report-missing", "high", "enforce", "no vulnerability report for this image",
      "Scan the image in CI (trivy/grype) and publish the JSON report to the hub's report directory.",
      protects="running an image nobody scanned (fail closed, as Harbor does; set the rule to `audit` to warn)",
      when="`scan_report_dir` is set and no `scan_osv_file`")
def report_missing(s):
    if _gated(s) and _no_source(s) and not s.context.report_problems:
        yield f"No vulnerability report for this image digest in {s.policy.scan_report_dir}."


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


@rule("scan.severity-threshold", "high", "enforce", "vulnerabilities at or above the severity threshold",
      "Update the affected packages and rebuild, or allowlist the CVE with an expiry date.",
      protects="known vulnerabilities at or above `scan_deny_severity`, from the reports or from `scan_osv_file` "
               "matched against the image's SBOM, unless `scan_cve_allowlist` accepts them until a date",
      when="`scan_report_dir` or `scan_osv_file` is set")
def severity_threshold(s):
    if not _gated(s) or _no_source(s):
        return
    vulns = list(s.context.vulns)
    if s.context.osv is not None and not _osv_broken(s):  # the OSV list is a source of its own
        vulns += osv.match(s.context.osv, s.once(packages))
    policy = s.policy
    blocking, expired = reports.over_threshold(vulns, policy.scan_deny_severity, policy.scan_cve_allowlist, s.today)
    if blocking:
        note = f" Expired allowlist entries: {', '.join(expired)}." if expired else ""
        yield Hit(f"{len(blocking)} vulnerabilities at or above {policy.scan_deny_severity}: "
                  f"{listing(v.describe() for v in blocking)}.{note}",
                  max((v.severity for v in blocking), key=reports.RANK.get))
