"""The SBOM of what admission read (CycloneDX 1.6, schema-validated) and the OSV gate on its purls."""

import dataclasses
import json

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from hardened_spawner.admission import engine, evidence, osv, sbom
from hardened_spawner.admission.policy import Policy
from admission_images import COMPLIANT_RECORDS, DAY, HEX, image, record, rules

STATUS = b"""Package: openssl
Status: install ok installed
Architecture: amd64
Version: 3.0.11-1~deb12u2
Description: Secure Sockets Layer toolkit

Package: libssl3
Status: install ok installed
Source: openssl
Architecture: amd64
Version: 3.0.11-1~deb12u2

Package: removed-thing
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""
SITE = ("jupyterhub-6.1.1.dist-info", "requests_toolbelt-1.0.0.dist-info")


def inputs(status=STATUS, site=SITE, records=COMPLIANT_RECORDS):
    facts, info = image(files={sbom.DPKG_STATUS: status} if status else None, site=site, records=records)
    return engine.prepare(facts, engine.plan_for(Policy())), info


def test_packages_are_conda_pip_and_deb_purls():
    found, _ = inputs()
    purls = [p.purl for p in sbom.packages(found, "https://conda.anaconda.org")]
    assert purls == [
        "pkg:conda/jupyterhub@6.1.1?build=pyhd8ed1ab_0&channel=conda.anaconda.org/conda-forge&subdir=noarch&type=conda",
        "pkg:conda/python@3.11.2?build=hab00c5b_0_cpython&channel=conda.anaconda.org/conda-forge&subdir=linux-64"
        "&type=conda",
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&upstream=openssl",
        "pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64",
        "pkg:pypi/requests-toolbelt@1.0.0",     # jupyterhub's dist-info belongs to its conda record
    ]


def test_the_sbom_is_valid_cyclonedx_1_6_with_hashes_and_a_stable_serial():
    found, info = inputs()
    pkgs = sbom.packages(found, "https://conda.anaconda.org")
    text = sbom.to_json(sbom.build("example.org/jupyter/img:1", info, pkgs))
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, getattr(error, "data", error)
    doc = json.loads(text)
    assert doc["specVersion"] == "1.6" and doc["serialNumber"] == sbom.serial_number(info["Id"], pkgs)
    assert doc["metadata"]["component"]["name"] == "example.org/jupyter/img"
    python = next(c for c in doc["components"] if c["name"] == "python")
    assert {h["alg"] for h in python["hashes"]} == {"MD5", "SHA-256"}
    assert sbom.to_json(sbom.build("example.org/jupyter/img:1", info, pkgs)) == text  # deterministic
    fewer = sbom.packages(inputs(status=None)[0], "https://conda.anaconda.org")
    assert sbom.serial_number(info["Id"], fewer) != doc["serialNumber"]


def test_evaluate_names_the_sbom_serial():
    found, info = inputs()
    decision = engine.evaluate(Policy(), "example.org/jupyter/img:1", info, found, engine.Context(), DAY)
    assert decision.sbom == sbom.serial_number(info["Id"], sbom.packages(found,
                                                                         "https://conda.anaconda.org"))


def entry(id, affected, level="CRITICAL", **extra):
    return {"id": id, "affected": affected, "database_specific": {"severity": level} if level else {}, **extra}


OPENSSL = entry("DSA-9999-1", [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                               "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"},
                                                                          {"fixed": "3.0.13-1~deb12u1"}]}]}])


@pytest.mark.parametrize("advisory, hits", [
    (OPENSSL, {"pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64",
               "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&upstream=openssl"}),   # by source package
    (entry("GHSA-x", [{"package": {"ecosystem": "PyPI", "name": "Requests_Toolbelt"}, "versions": ["1.0.0"]}]),
     {"pkg:pypi/requests-toolbelt@1.0.0"}),
    (entry("SITE-1", [{"package": {"purl": "pkg:conda/jupyterhub"}, "ranges": [
        {"type": "ECOSYSTEM", "events": [{"introduced": "6.0"}, {"last_affected": "6.1.1"}]}]}]),
     {"pkg:conda/jupyterhub@6.1.1?build=pyhd8ed1ab_0&channel=conda.anaconda.org/conda-forge&subdir=noarch&type=conda"}),
    (entry("SITE-2", [{"package": {"purl": "pkg:conda/jupyterhub"}, "ranges": [
        {"type": "ECOSYSTEM", "events": [{"introduced": "6.0"}, {"fixed": "6.1.1"}]}]}]), set()),
    (entry("GHSA-y", [{"package": {"ecosystem": "PyPI", "name": "requests-toolbelt"}, "versions": ["0.9"]}]), set()),
    (entry("GO-1", [{"package": {"ecosystem": "Go", "name": "openssl"}, "versions": ["3.0.11-1~deb12u2"]}]), set()),
])
def test_osv_matches_by_ecosystem_purl_and_version(advisory, hits):
    found, _ = inputs()
    pkgs = sbom.packages(found, "https://conda.anaconda.org")
    assert {v.package for v in osv.match([advisory], pkgs)} == hits


def test_osv_severity_from_github_words_or_cvss_vectors():
    assert osv.severity(entry("A", [], "MODERATE")) == "moderate"
    vector = {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}
    assert osv.severity(entry("B", [], None, severity=[vector])) == "critical"
    assert osv.severity(entry("C", [], None)) == "unknown"
    with pytest.raises(osv.OsvError, match="bad CVSS vector"):
        osv.severity(entry("D", [], None, severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:Q"}]))


def test_the_osv_gate_denies_without_any_scanner_report(tmp_path):
    path = tmp_path / "osv.json"
    path.write_text(json.dumps({"vulns": [OPENSSL]}))
    policy = Policy(scan_osv_file=str(path), pip_allowlist=("requests-toolbelt",))
    found, info = inputs()
    context = engine.load_context(policy, [HEX])
    decision = engine.evaluate(policy, "example.org/jupyter/img:1", info, found, context, DAY)
    assert rules(decision) == {"scan.severity-threshold": "deny"}, decision.findings
    assert "DSA-9999-1" in decision.findings[0].message and "scan.report-missing" not in rules(decision)
    allowed = dataclasses.replace(policy, scan_cve_allowlist=(("DSA-9999-1", "2099-01-01"),))
    assert engine.evaluate(allowed, "example.org/jupyter/img:1", info, found, context, DAY).admitted
    patched, _ = inputs(status=STATUS.replace(b"3.0.11-1~deb12u2", b"3.0.13-1~deb12u1"))
    assert engine.evaluate(policy, "example.org/jupyter/img:1", info, patched, context, DAY).admitted


def test_a_broken_osv_file_denies_and_is_a_config_problem(tmp_path):
    path = tmp_path / "osv.json"
    path.write_text('[{"no": "id"}]')
    policy = Policy(scan_osv_file=str(path), pip_allowlist=("requests-toolbelt",))
    found, info = inputs()
    decision = engine.evaluate(policy, "example.org/jupyter/img:1", info, found, engine.load_context(policy, []), DAY)
    assert rules(decision) == {"scan.report-invalid": "deny"}
    assert [s for s, _ in evidence.file_problems(policy, "C.")] == ["C.scan_osv_file"]


def test_records_without_hashes_keep_a_valid_sbom():
    found, info = inputs(records=[dict(record("numpy", "2.1.0"), md5="", sha256="")])
    pkgs = sbom.packages(found, "https://conda.anaconda.org")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom.to_json(sbom.build("x/y:1", info, pkgs))) is None


def test_each_conda_package_says_what_the_channel_check_found():
    from hardened_spawner.admission import conda
    from hardened_spawner.admission.channels import Listed
    found, info = inputs()
    forge = "conda.anaconda.org/conda-forge"
    listed = {(forge, "noarch", "jupyterhub-6.1.1-pyhd8ed1ab_0.conda"): Listed("ab" * 32, "", 0),
              (forge, "linux-64", "python-3.11.2-hab00c5b_0_cpython.conda"): Listed("cd" * 32, "", 0)}

    def check(listed, channels):
        return lambda r: (("hardened-spawner:channel-check",
                           conda.channel_check(r, listed, channels, "https://conda.anaconda.org", ())),)

    def proved(check):
        text = sbom.to_json(sbom.build("example.org/img:1", info, sbom.packages(found, "https://conda.anaconda.org", check)))
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
        return {c["name"]: {p["name"]: p["value"] for p in c.get("properties", ())}.get("hardened-spawner:channel-check")
                for c in json.loads(text)["components"]}

    assert proved(check(listed, {forge})) == {"jupyterhub": "listed", "python": "not listed", "libssl3": None,
                                              "openssl": None, "requests-toolbelt": None}
    assert proved(check(RuntimeError("mirror down"), {forge}))["jupyterhub"] == "not checked"
    assert proved(check(listed, {"conda.anaconda.org/other"}))["jupyterhub"] == "not checked"
    assert proved(None)["python"] == "not checked"
