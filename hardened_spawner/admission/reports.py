"""Vulnerability reports from the admin's CI: Trivy JSON, Grype JSON, CycloneDX JSON.

Reports live in one directory and are found by the image digest in their file
name (``sha256-<hex>.trivy.json``, ``<hex>.json``, ...: any ``*.json`` whose
name contains the 64 hex digits of the image id or a repo digest). A report
must also say inside that it was made for that image: a report for another
digest, one that is not JSON, or one with a severity this module does not
know is an error naming the file. Parsing is pure; :func:`find` lists files.
"""

import datetime
import json
import os
import re
from dataclasses import dataclass

RANK = {"none": 0, "info": 0, "negligible": 0, "unknown": 0, "low": 1, "medium": 2, "moderate": 2,
        "high": 3, "important": 3, "critical": 4}
THRESHOLDS = ("low", "medium", "high", "critical")
_DIGEST = re.compile(r"sha256(?::|%3[aA])([0-9a-f]{64})")
MAX_REPORT = 256 << 20


class ReportError(ValueError):
    """A report that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Vulnerability:
    id: str
    package: str
    version: str
    severity: str
    fixed: str = ""

    def describe(self):
        fix = f", fixed in {self.fixed}" if self.fixed else ", no fix yet"
        return f"{self.id} ({self.severity}) in {self.package} {self.version}{fix}"


def _severity(value, path, vuln_id):
    severity = str(value or "unknown").strip().lower()
    if severity not in RANK:
        raise ReportError(f"{path}: unknown severity {value!r} for {vuln_id}")
    return severity


def _digests(*parts):
    return set(_DIGEST.findall(json.dumps(parts)))


def _trivy(doc, path):
    meta = doc.get("Metadata") or {}
    digests = _digests(meta.get("ImageID"), meta.get("RepoDigests"), doc.get("ArtifactName"))
    vulns = []
    for result in doc.get("Results") or []:
        for v in (result or {}).get("Vulnerabilities") or []:
            vid = v.get("VulnerabilityID") or "?"
            vulns.append(Vulnerability(vid, v.get("PkgName") or "?", v.get("InstalledVersion") or "",
                                       _severity(v.get("Severity"), path, vid), v.get("FixedVersion") or ""))
    return digests, vulns


def _grype(doc, path):
    target = (doc.get("source") or {}).get("target") or {}
    digests = _digests(target.get("imageID"), target.get("manifestDigest"), target.get("repoDigests"))
    vulns = []
    for match in doc.get("matches") or []:
        v = match.get("vulnerability") or {}
        art = match.get("artifact") or {}
        vid = v.get("id") or "?"
        fixed = ", ".join((v.get("fix") or {}).get("versions") or [])
        vulns.append(Vulnerability(vid, art.get("name") or "?", art.get("version") or "",
                                   _severity(v.get("severity"), path, vid), fixed))
    return digests, vulns


def _cyclonedx(doc, path):
    component = (doc.get("metadata") or {}).get("component") or {}
    digests = _digests(component)
    names = {c.get("bom-ref"): (c.get("name") or "?", c.get("version") or "") for c in doc.get("components") or []}
    vulns = []
    for v in doc.get("vulnerabilities") or []:
        vid = v.get("id") or "?"
        ratings = [_severity(r.get("severity"), path, vid) for r in v.get("ratings") or []] or ["unknown"]
        severity = max(ratings, key=RANK.get)
        for affected in v.get("affects") or [{}]:
            name, version = names.get(affected.get("ref"), (affected.get("ref") or "?", ""))
            fixed = ", ".join(r.get("version", "") for r in affected.get("versions") or []
                              if r.get("status") == "unaffected")
            vulns.append(Vulnerability(vid, name, version, severity, fixed))
    return digests, vulns


def parse(path, data):
    """``(format, digests, vulnerabilities)`` of one report's bytes."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{path}: not a Trivy, Grype or CycloneDX report (top level is not an object)")
    if doc.get("bomFormat") == "CycloneDX":
        kind, (digests, vulns) = "cyclonedx", _cyclonedx(doc, path)
    elif "matches" in doc and "source" in doc:
        kind, (digests, vulns) = "grype", _grype(doc, path)
    elif "SchemaVersion" in doc and ("Results" in doc or "ArtifactName" in doc):
        kind, (digests, vulns) = "trivy", _trivy(doc, path)
    else:
        raise ReportError(f"{path}: not a Trivy, Grype or CycloneDX report")
    return kind, digests, vulns


def find(directory, digests):
    """Report files in ``directory`` whose names carry one of ``digests`` (hex)."""
    try:
        names = os.listdir(directory)
    except OSError as e:
        raise ReportError(f"{directory}: cannot list the report directory: {e.strerror}") from None
    return sorted(os.path.join(directory, n) for n in names
                  if n.endswith(".json") and any(d in n for d in digests))


def load(directory, digests):
    """``(vulnerabilities, problems, files)`` from the reports for ``digests`` in ``directory``."""
    vulns, problems = [], []
    try:
        files = find(directory, digests)
    except ReportError as e:
        return [], [str(e)], []
    for path in files:
        try:
            if os.path.getsize(path) > MAX_REPORT:
                raise ReportError(f"{path}: larger than {MAX_REPORT >> 20} MiB")
            with open(path, "rb") as f:
                kind, declared, found = parse(path, f.read())
            if not declared:
                raise ReportError(f"{path}: the {kind} report does not say which image digest it was made for")
            if not declared & set(digests):
                others = ", ".join(f"sha256:{d[:12]}" for d in sorted(declared))
                raise ReportError(f"{path}: the {kind} report is for {others}, not this image")
            vulns.extend(found)
        except (OSError, ReportError) as e:
            problems.append(str(e) if isinstance(e, ReportError) else f"{path}: cannot read: {e}")
    return vulns, problems, files


def over_threshold(vulns, threshold, allowlist, today):
    """``(blocking, expired)``: vulnerabilities at or above ``threshold`` not allowlisted."""
    allowed = {cve: datetime.date.fromisoformat(date) for cve, date in allowlist}
    blocking, expired = [], set()
    seen = set()
    for v in vulns:
        if RANK[v.severity] < RANK[threshold] or (v.id, v.package, v.version) in seen:
            continue
        seen.add((v.id, v.package, v.version))
        until = allowed.get(v.id)
        if until is not None and today <= until:
            continue
        if until is not None:
            expired.add(f"{v.id} (allowlisted until {until.isoformat()})")
        blocking.append(v)
    return blocking, sorted(expired)
