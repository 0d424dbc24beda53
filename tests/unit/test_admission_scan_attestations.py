"""Signed scan attestations (pure): trusted signer, subject, age, the scanner's result.

Results are CycloneDX documents made with cyclonedx-python-lib, wrapped as cosign's vulnerability
predicate or attested as a CycloneDX SBOM; statements built and signed as in test_admission_provenance.
"""

import datetime

from cryptography.hazmat.primitives.asymmetric import ec

import signrig
from hardened_spawner.admission import scan_attestations
from hardened_spawner.admission.evidence import Evidence
from hardened_spawner.admission.registry import Material
from hardened_spawner.admission.signing import TrustRule

NAME = "registry.example.org/jupyter/scipy"
DIGEST, OTHER, IMAGE_ID = ("sha256:" + c * 64 for c in "abc")
KEY, STRANGER = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
TODAY = datetime.date(2026, 12, 7)


def at(days_ago):
    return datetime.datetime.combine(TODAY - datetime.timedelta(days=days_ago), datetime.time(6),
                                     datetime.timezone.utc)


def vuln(days_ago, *vulns, key=KEY, subject=DIGEST):
    made = at(days_ago)
    predicate = signrig.vuln_predicate(signrig.cyclonedx(made, vulns), made)
    return signrig.envelope(signrig.statement(subject, scan_attestations.VULN, predicate), key)


def sbom(days_ago, *vulns):
    return signrig.envelope(signrig.statement(DIGEST, scan_attestations.CYCLONEDX,
                                              signrig.cyclonedx(at(days_ago), vulns)), KEY)


def judge(*envelopes, max_age=7, **kwargs):
    evidence = Evidence(NAME, TrustRule(("registry.example.org/**",), keys=("/k.pub",)),
                        (Material(DIGEST, (IMAGE_ID,), envelopes=envelopes),), (("/k.pub", KEY.public_key()),),
                        **kwargs)
    return scan_attestations.judge(evidence, IMAGE_ID, max_age, TODAY)


def test_a_fresh_signed_scan_brings_its_vulnerabilities():
    found = judge(vuln(2, ("CVE-2024-1", "critical"), ("CVE-2024-2", "low")))
    assert found.status == "fresh" and "by /k.pub on 2026-12-05" in found.message
    assert sorted((v.id, v.severity) for v in found.vulns) == [("CVE-2024-1", "critical"), ("CVE-2024-2", "low")]


def test_a_cyclonedx_sbom_attestation_counts_as_a_scan():
    found = judge(sbom(0, ("CVE-2024-3", "high")))
    assert found.status == "fresh" and [v.id for v in found.vulns] == ["CVE-2024-3"]


def test_the_newest_scan_decides_and_an_old_one_is_stale():
    stale = judge(vuln(8, ("CVE-2024-1", "critical")))
    assert stale.status == "stale" and stale.vulns == ()
    assert "made on 2026-11-29, 8 days ago; scans older than 7 days do not count" in stale.message
    assert judge(vuln(30), vuln(7)).status == "fresh"
    assert judge(vuln(8), max_age=8).status == "fresh"


def test_another_key_or_another_digest_is_no_scan_and_says_so():
    other_key = judge(vuln(0, key=STRANGER))
    assert other_key.status == "none" and "signed by a key the trust policy does not name" in other_key.message
    other_digest = judge(vuln(0, subject=OTHER))
    assert other_digest.status == "none" and f"made for {OTHER}, not for {DIGEST}" in other_digest.message


def test_a_registry_that_fails_is_an_error_and_no_attestation_is_none():
    assert judge(error="cannot reach the registry r: refused").status == "error"
    assert judge().status == "none"


def test_a_scan_that_says_no_time_cannot_be_used():
    predicate = signrig.vuln_predicate(signrig.cyclonedx(at(0)), at(0))
    del predicate["metadata"]["scanFinishedOn"]
    undated = signrig.envelope(signrig.statement(DIGEST, scan_attestations.VULN, predicate), KEY)
    found = judge(undated)
    assert found.status == "unreadable" and "says no time it was made" in found.problems[0]
