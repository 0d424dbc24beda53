"""Trivy, Grype and CycloneDX reports: found by digest, checked, gated by severity."""

import datetime
import json

import pytest
from hypothesis import given, strategies as st

from hardened_spawner.admission import reports

IMAGE = "a" * 64
OTHER = "b" * 64
DAY = datetime.date(2026, 11, 25)


def trivy(digest=IMAGE, vulns=()):
    return {"SchemaVersion": 2, "ArtifactName": "example/img:1", "ArtifactType": "container_image",
            "Metadata": {"ImageID": f"sha256:{digest}", "RepoDigests": [f"example/img@sha256:{'c' * 64}"]},
            "Results": [{"Target": "debian 12", "Vulnerabilities": [
                {"VulnerabilityID": vid, "PkgName": pkg, "InstalledVersion": "1.0", "FixedVersion": fix, "Severity": sev}
                for vid, pkg, sev, fix in vulns] or None}]}


def grype(digest=IMAGE, vulns=()):
    return {"matches": [{"vulnerability": {"id": vid, "severity": sev, "fix": {"state": "fixed", "versions": [fix]}},
                         "artifact": {"name": pkg, "version": "1.0", "type": "deb"}} for vid, pkg, sev, fix in vulns],
            "source": {"type": "image", "target": {"userInput": "example/img:1", "imageID": f"sha256:{digest}",
                                                    "manifestDigest": f"sha256:{'d' * 64}", "repoDigests": []}}}


def cyclonedx(digest=IMAGE, vulns=()):
    return {"bomFormat": "CycloneDX", "specVersion": "1.5",
            "metadata": {"component": {"type": "container", "name": "example/img", "bom-ref": "img",
                                       "properties": [{"name": "aquasecurity:trivy:ImageID", "value": f"sha256:{digest}"}]}},
            "components": [{"bom-ref": f"pkg:{pkg}", "name": pkg, "version": "1.0"} for _, pkg, _, _ in vulns],
            "vulnerabilities": [{"id": vid, "ratings": [{"severity": sev.lower()}], "affects": [{"ref": f"pkg:{pkg}"}]}
                                for vid, pkg, sev, _ in vulns]}


VULNS = [("CVE-2024-0001", "openssl", "CRITICAL", "3.0.9"), ("CVE-2024-0002", "zlib", "LOW", "")]


@pytest.mark.parametrize("make, kind", [(trivy, "trivy"), (grype, "grype"), (cyclonedx, "cyclonedx")])
def test_formats_parse(make, kind):
    got_kind, digests, vulns = reports.parse("r.json", json.dumps(make(vulns=VULNS)).encode())
    assert got_kind == kind and IMAGE in digests
    assert {(v.id, v.package, v.severity) for v in vulns} == {("CVE-2024-0001", "openssl", "critical"),
                                                             ("CVE-2024-0002", "zlib", "low")}


def write(tmp_path, name, doc):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_reports_are_found_by_the_digest_in_their_name(tmp_path):
    write(tmp_path, f"sha256-{IMAGE}.trivy.json", trivy(vulns=VULNS))
    write(tmp_path, f"{IMAGE}.grype.json", grype(vulns=VULNS[:1]))
    write(tmp_path, f"sha256-{OTHER}.trivy.json", trivy(OTHER))
    write(tmp_path, f"{IMAGE}.txt", "ignored: not .json")
    vulns, problems, files = reports.load(str(tmp_path), [IMAGE])
    assert problems == [] and len(files) == 2 and len(vulns) == 3


@pytest.mark.parametrize("doc, message", [
    ("{oops", "not JSON"),
    ([1, 2], "top level is not an object"),
    ({"hello": "world"}, "not a Trivy, Grype or CycloneDX report"),
    (trivy(OTHER), "is for sha256:bbbbbbbbbbbb, sha256:cccccccccccc, not this image"),
    ({"SchemaVersion": 2, "Results": []}, "does not say which image digest"),
    (trivy(vulns=[("CVE-1", "x", "SEVERE", "")]), "unknown severity 'SEVERE' for CVE-1"),
])
def test_bad_reports_name_the_file_and_problem(tmp_path, doc, message):
    path = write(tmp_path, f"{IMAGE}.json", doc)
    vulns, problems, files = reports.load(str(tmp_path), [IMAGE])
    assert vulns == [] and files == [path]
    assert len(problems) == 1 and problems[0].startswith(path) and message in problems[0]


def test_missing_directory_is_a_problem(tmp_path):
    _, problems, files = reports.load(str(tmp_path / "nope"), [IMAGE])
    assert files == [] and "cannot list the report directory" in problems[0]


def test_threshold_and_allowlist_with_expiry():
    vulns = [reports.Vulnerability("CVE-1", "a", "1", "critical"), reports.Vulnerability("CVE-2", "b", "1", "high"),
             reports.Vulnerability("CVE-3", "c", "1", "medium"), reports.Vulnerability("CVE-1", "a", "1", "critical")]
    blocking, expired = reports.over_threshold(vulns, "high", (), DAY)
    assert [v.id for v in blocking] == ["CVE-1", "CVE-2"] and expired == []
    blocking, expired = reports.over_threshold(vulns, "high", (("CVE-1", "2026-11-25"), ("CVE-2", "2026-11-24")), DAY)
    assert [v.id for v in blocking] == ["CVE-2"] and expired == ["CVE-2 (allowlisted until 2026-11-24)"]


@given(st.sampled_from(sorted(reports.RANK)), st.sampled_from(reports.THRESHOLDS))
def test_severity_order(severity, threshold):
    vuln = reports.Vulnerability("CVE-9", "p", "1", severity)
    blocking, _ = reports.over_threshold([vuln], threshold, (), DAY)
    assert bool(blocking) == (reports.RANK[severity] >= reports.RANK[threshold])


@given(st.binary(max_size=200))
def test_parser_never_crashes_on_garbage(data):
    try:
        reports.parse("x.json", data)
    except reports.ReportError as e:
        assert str(e).startswith("x.json: ")
