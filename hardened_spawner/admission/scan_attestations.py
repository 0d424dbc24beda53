"""Signed vulnerability scans and SBOMs stored as attestations: verified, dated, read. Pure: no I/O.

When ``scan_attestation_max_age_days`` is set, a cosign vulnerability
attestation (``https://cosign.sigstore.dev/attestation/vuln/v1``: the
scanner's Trivy, Grype or CycloneDX result in ``scanner.result``, the time in
``metadata.scanFinishedOn``) or a CycloneDX attestation
(``https://cyclonedx.org/bom``, the time in ``metadata.timestamp``) is a
scanner report, like a file in ``scan_report_dir``, when
:func:`.attestations.verified` accepts it (signed by a key of the trust
policy, subject the image digest). The newest one decides whether the scan
is recent enough; its vulnerabilities then go through the same threshold and
allowlist as reports' (:mod:`.rules.scan`).
"""

import datetime
import json
from dataclasses import dataclass

from . import attestations, reports

VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
CYCLONEDX = "https://cyclonedx.org/bom"
PREDICATES = (VULN, CYCLONEDX)


@dataclass(frozen=True)
class Scan:
    digest: str
    signer: str
    finished: object          # datetime.datetime (UTC), None when the attestation says no time
    vulns: tuple = ()
    problem: str = ""         # why its result cannot be used


@dataclass(frozen=True)
class Scans:
    """What the registry's scan attestations say. ``status``: none, fresh, stale, unreadable, error."""

    status: str
    message: str = ""
    vulns: tuple = ()
    problems: tuple = ()


def _time(value):
    try:
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def read(attestation):
    """The :class:`Scan` of one verified attestation."""
    statement = attestation.statement
    predicate = statement.get("predicate") if isinstance(statement.get("predicate"), dict) else {}
    if statement.get("predicateType") == VULN:
        result = (predicate.get("scanner") or {}).get("result")
        finished = _time((predicate.get("metadata") or {}).get("scanFinishedOn"))
    else:
        result, finished = predicate, _time((predicate.get("metadata") or {}).get("timestamp"))
    where = f"the scan attestation of {attestation.digest} (signed by {attestation.signer})"
    if finished is None:
        return Scan(attestation.digest, attestation.signer, None, problem=f"{where} says no time it was made")
    try:
        _, _, vulns = reports.parse(where, json.dumps(result).encode())
    except reports.ReportError as e:
        return Scan(attestation.digest, attestation.signer, finished, problem=str(e))
    return Scan(attestation.digest, attestation.signer, finished, tuple(vulns))


def judge(evidence, image_id, max_age_days, today):
    """The :class:`Scans` of the image: the newest trusted scan decides whether it is recent enough."""
    if evidence is None:
        return Scans("none")
    if evidence.error:
        return Scans("error", f"the scan attestations of {evidence.name} could not be read: {evidence.error}")
    found, notes = attestations.verified(evidence, image_id, PREDICATES, "a scan attestation")
    scans = [read(a) for a in found if not a.problem]
    if not scans:
        seen = "; ".join(dict.fromkeys([a.problem for a in found] + notes))
        return Scans("none", f"no signed scan attestation of {evidence.name}" + (f" (found {seen})" if seen else ""))
    problems = tuple(s.problem for s in scans if s.problem)
    dated = [s for s in scans if not s.problem]
    if not dated:
        return Scans("unreadable", problems=problems)
    newest = max(dated, key=lambda s: s.finished)
    age = (today - newest.finished.date()).days
    if age > max_age_days:
        return Scans("stale", f"The newest signed scan of {newest.digest} (signed by {newest.signer}) was made on "
                     f"{newest.finished.date().isoformat()}, {age} days ago; scans older than {max_age_days} days "
                     "do not count.", problems=problems)
    fresh = [s for s in dated if (today - s.finished.date()).days <= max_age_days]
    return Scans("fresh", f"signed scan of {newest.digest} by {newest.signer} on {newest.finished.date().isoformat()}",
                 tuple(v for s in fresh for v in s.vulns), problems)
