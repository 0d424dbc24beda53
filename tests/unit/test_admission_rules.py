"""Every admission rule of the registry through the engine: a row that fires it and one that does not.

A rule added to hardened_spawner/admission/rules without rows here fails
``test_every_rule_has_a_row_that_fires_and_one_that_passes``. Also: rule modes,
the reference decision the spawner asks before pulling, the registry's shape
and the docs tables generated from it.
"""

import datetime
import json
import re
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import signrig
from hardened_spawner.admission import engine, locks
from hardened_spawner.admission.model import Decision
from hardened_spawner.admission.evidence import Evidence
from hardened_spawner.admission.facts import Entry
from hardened_spawner.admission.policy import Policy
from hardened_spawner.admission.registry import Material
from hardened_spawner.admission.reports import Vulnerability
from hardened_spawner.admission.rules import FAMILIES, NEEDS, REFERENCE_RULES, RULES
from hardened_spawner.tools import docs_rules
from admission_rows_python import PYTHON_ROWS
from admission_images import COMPLIANT_RECORDS, DAY, HEX, KEYED, LOCKED, PASSWD, REF, UNSIGNED_OK, image, record, rules


DOCS = Path(__file__).resolve().parents[2] / "docs"
def decide(policy=None, ref=REF, files=None, entries=None, context=None, **kwargs):
    policy = policy or Policy()
    facts, info = image(files, entries, **kwargs)
    inputs = engine.prepare(facts, engine.plan_for(policy))
    return engine.evaluate(policy, ref, info, inputs, context or engine.Context(), DAY)


def fires(rule, **kwargs):
    return pytest.param(rule, kwargs, True, id=f"{rule}-fires")


def passes(rule, **kwargs):
    return pytest.param(rule, kwargs, False, id=f"{rule}-passes")


def sudoers(text):
    return {"files": {"/etc/sudoers.d/dev": text}}


def sshd_config(text):
    return {"files": {"/etc/ssh/sshd_config": text}}


def reports(**context):
    return {"policy": Policy(scan_report_dir="/reports"), "context": engine.Context(**context)}


def vuln(severity):
    return Vulnerability("CVE-2024-1", "openssl", "3.0", severity)


TRUST_POLICY = ('{"images": "example.org/**", "keys": ["/etc/jupyterhub/cosign.pub"]}',)


def signatures(*args, **kwargs):
    return {"policy": Policy(signature_policy=TRUST_POLICY),
            "context": engine.Context(signatures=Evidence("example.org/jupyter/img", *args, **kwargs))}


CI_KEY, STRANGER = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
BUILDER, L1_BUILDER, SOURCE = "https://ci.example.org/builder@v2", "https://ci.example.org/shared", "https://git.example.org/img"
PROVENANCE_POLICY = Policy(signature_policy=TRUST_POLICY, provenance_policy=(json.dumps(
    {"images": "example.org/**", "builders": {BUILDER: 3, L1_BUILDER: 1}, "sources": [f"{SOURCE}@refs/heads/main"],
     "min_level": 2}),))


def attested(builder=BUILDER, source=SOURCE, ref="refs/heads/main", key=CI_KEY):
    kind, predicate = signrig.provenance(builder, source, ref)
    return signrig.envelope(signrig.statement(f"sha256:{'d' * 64}", kind, predicate), key)


def scanned(day, *vulnerabilities):
    """A vulnerability attestation signed by CI_KEY for the row images' registry digest, made on ``day``."""
    made = datetime.datetime.combine(day, datetime.time(8), datetime.timezone.utc)
    predicate = signrig.vuln_predicate(signrig.cyclonedx(made, vulnerabilities), made)
    return signrig.envelope(signrig.statement(f"sha256:{'d' * 64}", "https://cosign.sigstore.dev/attestation/vuln/v1",
                                              predicate), CI_KEY)


def attested_scans(*envelopes):
    rows = provenance(*envelopes)
    return {**rows, "policy": Policy(signature_policy=TRUST_POLICY, scan_attestation_max_age_days=7)}


def provenance(*envelopes, error=""):
    material = Material(f"sha256:{'d' * 64}", (f"sha256:{HEX}",), envelopes=envelopes)
    keys = (("/etc/jupyterhub/cosign.pub", CI_KEY.public_key()),)
    # the signature itself is not what these rows are about: the trust policy admits the image unsigned
    return {"policy": PROVENANCE_POLICY, "context": engine.Context(signatures=Evidence(
        "example.org/jupyter/img", UNSIGNED_OK, (material,), keys, error=error))}


# Each row: the rule, the image and policy (keywords of decide()), and whether the rule fires.
# The rows that pass are near misses: the same shape one step short of the violation.
ROWS = [
    fires("image.reference-invalid", ref="../../etc/passwd"),
    passes("image.reference-invalid", ref="registry.example.org:5000/jupyter/img:Tag_1.0"),
    fires("image.not-allowlisted", policy=Policy(image_allowlist=("registry.example.org/**",))),
    passes("image.not-allowlisted", policy=Policy(image_allowlist=("example.org/jupyter/*",))),
    fires("image.tag-latest", ref="example.org/jupyter/img"),
    fires("image.tag-latest", ref="example.org/jupyter/img:latest"),
    passes("image.tag-latest", ref=f"example.org/jupyter/img:latest@sha256:{HEX}"),
    fires("image.digest-required", policy=Policy(require_digest=True)),
    passes("image.digest-required", policy=Policy(require_digest=True), ref=f"example.org/jupyter/img@sha256:{HEX}"),
    fires("image.user-root", User=""),
    fires("image.user-root", User="root:root"),
    fires("image.user-root", User="0"),
    fires("image.user-root", User="00"),
    fires("image.user-root", User="+0:100"),
    fires("image.user-root", User="toor", files={"/etc/passwd": PASSWD + b"toor:x:0:0::/root:/bin/sh\n"}),
    passes("image.user-root", User="jovyan"),
    fires("image.user-unknown", User="nobody"),
    fires("image.user-unknown", User="1000:wheel"),
    passes("image.user-unknown", User="jovyan:users"),
    fires("image.gpu-env", Env=["NVIDIA_VISIBLE_DEVICES=all"]),
    fires("image.gpu-env", Env=["DOCKER_RESOURCE_GPU=0"]),
    passes("image.gpu-env", Env=["NVIDIA_DRIVER_CAPABILITIES=compute,utility", "CUDA_VERSION=12.4"]),
    fires("image.baked-private-key", files={"/home/jovyan/.ssh/id_rsa": b"-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n"}),
    fires("image.baked-private-key", files={"/root/.ssh/deploy.pem": b"-----BEGIN RSA PRIVATE KEY-----\n"}),
    fires("image.baked-private-key", files={"/etc/ssh/ssh_host_ed25519_key": b"anything"}),
    passes("image.baked-private-key", files={"/home/jovyan/.ssh/id_ed25519.pub": b"ssh-ed25519 AAAAC3Nza alice\n",
                                             "/etc/ssh/ssh_host_ed25519_key.pub": b"ssh-ed25519 AAAAC3Nza host\n"}),
    fires("image.baked-authorized-keys", files={"/home/jovyan/.ssh/authorized_keys": b"ssh-ed25519 AAAAC3Nza alice\n"}),
    fires("image.baked-authorized-keys", files={"/etc/ssh/authorized_keys/jovyan": b"ssh-rsa AAAAB3Nza bob\n"}),
    passes("image.baked-authorized-keys", files={"/home/jovyan/.ssh/authorized_keys": b"# delivered by the hub\n"}),
    fires("image.env-secret", Env=["GITHUB_TOKEN=ghp_x"]),
    fires("image.env-secret", Env=["AWS_SECRET_ACCESS_KEY=x"]),
    fires("image.env-secret", Env=["DB_PASSWORD=hunter2"]),
    passes("image.env-secret", Env=["PYTHON_GPG_KEY=A035C8C1", "API_TOKEN="]),
    fires("sshd.root-login", **sshd_config(b"PermitRootLogin yes\nAuthenticationMethods publickey\n")),
    passes("sshd.root-login", **sshd_config(b"PermitRootLogin no\nPasswordAuthentication yes\n")),
    fires("sshd.password-auth", **sshd_config(b"PermitRootLogin no\nPasswordAuthentication yes\n")),
    passes("sshd.password-auth", **sshd_config(b"PermitRootLogin no\nPasswordAuthentication no\n"
                                               b"KbdInteractiveAuthentication no\n")),
    fires("sudo.interpreter-grant", **sudoers(b"jovyan ALL=(ALL) NOPASSWD: /opt/conda/bin/*\n")),
    fires("sudo.interpreter-grant", files={"/etc/sudoers": b"%sudo ALL=(ALL:ALL) ALL\n", "/etc/group": b"sudo:x:27:jovyan\n"}),
    passes("sudo.interpreter-grant", **sudoers(b"jovyan ALL=(ALL) NOPASSWD: /usr/bin/id\n")),
    passes("sudo.interpreter-grant", files={"/etc/sudoers": b"root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n"}),
    fires("sudo.nopasswd", **sudoers(b"jovyan ALL=(ALL) NOPASSWD: /usr/bin/id\n")),
    passes("sudo.nopasswd", **sudoers(b"jovyan ALL=(ALL) /usr/bin/id\n")),
    fires("image.setuid-binary", entries={"/usr/bin/su": Entry(0o4755, "file", 10)}),
    fires("image.setuid-binary", entries={"/usr/bin/wall": Entry(0o2755, "file", 10)}),
    passes("image.setuid-binary", entries={"/usr/bin/su": Entry(0o755, "file", 10)}),
    passes("image.setuid-binary", entries={"/usr/bin/passwd": Entry(0o4755, "file", 1)},
           policy=Policy(setuid_allowlist=("/usr/bin/passwd",))),
    fires("image.too-old", policy=Policy(max_image_age_days=10)),
    passes("image.too-old", policy=Policy(max_image_age_days=30)),
    fires("image.no-healthcheck", Healthcheck={"Test": ["NONE"]}),
    fires("image.no-healthcheck", Healthcheck=None),
    passes("image.no-healthcheck"),
    fires("image.base-not-pinned", Labels={"org.opencontainers.image.base.name": "docker.io/condaforge/miniforge3:24.11.3-2"}),
    passes("image.base-not-pinned",
           Labels={"org.opencontainers.image.base.name": "docker.io/condaforge/miniforge3:24.11.3-2@sha256:" + "0" * 64}),
    passes("image.base-not-pinned", Labels={"org.opencontainers.image.base.name": ""}),
    passes("image.base-not-pinned", Labels=None),
    fires("conda.record-invalid", records=COMPLIANT_RECORDS + [{"name": "broken"}]),
    passes("conda.record-invalid", records=COMPLIANT_RECORDS + [{"name": "raw", "version": "1", "build": "0"}]),
    fires("conda.channel-not-allowed", policy=Policy(allowed_channels=("conda-forge",)),
          records=COMPLIANT_RECORDS + [record("evil", "1", channel="https://repo.example.com/evil")]),
    passes("conda.channel-not-allowed", records=COMPLIANT_RECORDS + [record("m", "1", channel="https://mirror.example.org/cf")],
           policy=Policy(allowed_channels=("conda-forge",), channel_mirrors=(("https://mirror.example.org/cf", "conda-forge"),))),
    fires("conda.python-eol", records=[record("python", "3.9.18", "h0_cpython", "linux-64")]),
    passes("conda.python-eol", records=[record("python", "3.10.14", "h0_cpython", "linux-64")],
           policy=Policy(python_eol_dates=(("3.10", "2026-11-26"),))),
    fires("conda.python-eol-soon", records=[record("python", "3.10.14", "h0_cpython", "linux-64")],
          policy=Policy(python_eol_dates=(("3.10", "2027-01-01"),))),
    passes("conda.python-eol-soon", records=[record("python", "3.10.14", "h0_cpython", "linux-64")],
           policy=Policy(python_eol_dates=(("3.10", "2027-01-01"),), python_eol_warn_days=30)),
    fires("conda.package-denied", policy=Policy(denied_packages=("jupyterhub <7",))),
    passes("conda.package-denied", policy=Policy(denied_packages=("jupyterhub <6", "https://repo.example.com/evil::python"))),
    fires("conda.package-required", policy=Policy(required_packages=("numpy",))),
    fires("conda.package-required", policy=Policy(required_packages=("jupyterhub",)), records=None),
    passes("conda.package-required", policy=Policy(required_packages=("jupyterhub >=6,<7", "conda-forge::python"))),
    fires("conda.lock-mismatch", policy=Policy(lock_file="/lock"), context=engine.Context(lock=LOCKED[:1])),
    fires("conda.lock-mismatch", policy=Policy(lock_file="/lock"), context=engine.Context(lock=LOCKED), records=None),
    passes("conda.lock-mismatch", policy=Policy(lock_file="/lock"), context=engine.Context(lock=LOCKED)),
    fires("conda.lock-invalid", policy=Policy(lock_file="/lock"), context=engine.Context(lock=locks.LockError("/lock: broken"))),
    passes("conda.lock-invalid", policy=Policy(lock_file="/lock"), context=engine.Context(lock=LOCKED)),
    fires("conda.pip-pollution", site=("jupyterhub-6.1.1.dist-info", "evil-1.0.dist-info")),
    passes("conda.pip-pollution", site=("jupyterhub-6.1.1.dist-info", "evil-1.0.dist-info"),
           policy=Policy(pip_allowlist=("evil",))),
    fires("scan.report-missing", **reports()),
    passes("scan.report-missing", **reports(report_files=("/reports/x.json",))),
    fires("scan.report-invalid", **reports(report_problems=("/reports/x.json: not JSON",), report_files=("/reports/x.json",))),
    passes("scan.report-invalid", **reports(report_files=("/reports/x.json",))),
    fires("scan.severity-threshold", **reports(vulns=(vuln("critical"),), report_files=("/reports/x.json",))),
    passes("scan.severity-threshold", **reports(vulns=(vuln("high"),), report_files=("/reports/x.json",))),
    fires("scan.report-missing", **attested_scans()),
    passes("scan.report-missing", **attested_scans(scanned(DAY - datetime.timedelta(days=30)))),
    fires("scan.report-stale", **attested_scans(scanned(DAY - datetime.timedelta(days=8)))),
    passes("scan.report-stale", **attested_scans(scanned(DAY - datetime.timedelta(days=30)),
                                                 scanned(DAY - datetime.timedelta(days=7)))),
    fires("scan.severity-threshold", **attested_scans(scanned(DAY, ("CVE-2024-1", "critical")))),
    passes("scan.severity-threshold", **attested_scans(scanned(DAY - datetime.timedelta(days=8),
                                                               ("CVE-2024-1", "critical")))),
    fires("image.signature", **signatures()),
    passes("image.signature", **signatures(KEYED)),
    fires("image.signature-missing", **signatures(KEYED)),
    passes("image.signature-missing", **signatures(KEYED, error="connection refused")),
    fires("image.signature-unverifiable", **signatures(KEYED, error="connection refused")),
    passes("image.signature-unverifiable", **signatures(UNSIGNED_OK)),
    fires("provenance.missing", **provenance()),
    passes("provenance.missing", **provenance(attested())),
    fires("provenance.unverifiable", **provenance(error="cannot reach the registry example.org: refused")),
    passes("provenance.unverifiable", **provenance(attested(key=STRANGER))),
    fires("provenance.untrusted-signer", **provenance(attested(key=STRANGER))),
    passes("provenance.untrusted-signer", **provenance(attested(key=STRANGER), attested())),
    fires("provenance.builder-not-allowed", **provenance(attested(builder="https://laptop.example.org"))),
    passes("provenance.builder-not-allowed", **provenance(attested(builder=L1_BUILDER))),
    fires("provenance.source-not-allowed", **provenance(attested(ref="refs/heads/feature"))),
    passes("provenance.source-not-allowed", **provenance(attested(builder="https://laptop.example.org"))),
    fires("provenance.level-too-low", **provenance(attested(builder=L1_BUILDER))),
    passes("provenance.level-too-low", **provenance(attested())),
] + PYTHON_ROWS


SEVERITY_OF_ROW = {"scan.severity-threshold": "critical"}  # the worst vulnerability found, not the rule's "high"


@pytest.mark.parametrize("rule, kwargs, fired", ROWS)
def test_rule_row(rule, kwargs, fired):
    decision = decide(**kwargs)
    assert (rule in rules(decision)) == fired, decision.findings
    if not fired:
        return
    meta = RULES[rule]
    severity = SEVERITY_OF_ROW.get(rule, meta.severity)
    for finding in (f for f in decision.findings if f.rule == rule):
        assert finding.message and finding.remediation == meta.remediation and finding.severity == severity
        assert finding.action == ("deny" if meta.default_mode == "enforce" else "warn")
    assert decision.admitted == (not decision.denials)


def test_every_rule_has_a_row_that_fires_and_one_that_passes():
    rows = {(p.values[0], p.values[2]) for p in ROWS}
    assert {rule for rule, _ in rows} <= set(RULES), "rows for rules that are not registered"
    missing = sorted((rule, "fires" if fired else "passes") for rule in RULES for fired in (True, False)
                     if (rule, fired) not in rows)
    assert missing == [], missing


def test_a_clean_image_is_admitted():
    decision = decide()
    assert decision.admitted and decision.findings == () and decision.digest == f"sha256:{HEX}"


# ---- the reference decision: before the pull ------------------------------------------------
REFERENCE_ROWS = [p for p in ROWS if RULES[p.values[0]] in REFERENCE_RULES]


@pytest.mark.parametrize("rule, kwargs, fired", REFERENCE_ROWS)
def test_evaluate_reports_exactly_the_reference_decision(rule, kwargs, fired):
    policy, ref = kwargs.get("policy", Policy()), kwargs.get("ref", REF)
    early = engine.reference_decision(policy, ref)
    later = decide(**kwargs)
    assert early.findings == tuple(f for f in later.findings if RULES[f.rule] in REFERENCE_RULES)
    assert (rule in rules(early)) == fired and early.digest == ""


def test_the_reference_decision_needs_no_image_and_runs_no_image_rule():
    policy = Policy(image_allowlist=("registry.example.org/**",), scan_report_dir="/reports", required_packages=("x",),
                    signature_policy=('{"images": "registry.example.org/**", "allow_unsigned": true}',))
    decision = engine.reference_decision(policy, "attacker.example:5000/x:1")
    assert not decision.admitted
    assert [(f.rule, f.action) for f in decision.findings] == [("image.not-allowlisted", "deny")]
    assert "attacker.example:5000/x matches none of the allowed patterns (registry.example.org/**)." \
        == decision.findings[0].message
    assert engine.reference_decision(policy, "registry.example.org/jupyter/scipy:2026.11") == Decision(True)


def test_the_reference_decision_applies_rule_modes():
    latest = "registry.example.org/x:latest"
    assert rules(engine.reference_decision(Policy(), latest)) == {"image.tag-latest": "deny"}
    audit = engine.reference_decision(Policy(modes=(("image.tag-latest", "audit"),)), latest)
    assert audit.admitted and rules(audit) == {"image.tag-latest": "warn"}
    assert engine.reference_decision(Policy(modes=(("image.tag-latest", "off"),)), latest).findings == ()


ALLOWED = Policy(image_allowlist=("registry.example.org/jupyter/**", "python"))


@pytest.mark.parametrize("ref", [
    "attacker.example:5000/jupyter/x:1",              # another registry, named through allowed_images = "*"
    "registry.example.org:5000/jupyter/x:1",          # the allowed host on another port is another registry
    "registry.example.org.attacker.example/jupyter/x:1",
    "127.0.0.1:5000/jupyter/x:1",
    "[::1]:5000/jupyter/x:1",
    "localhost/jupyter/x:1",
    "registry.example.org/other/x:1",                 # the allowed registry, a repository outside the pattern
    "attacker/python:3.12",                           # docker.io/attacker/python, not docker.io/library/python
])
def test_the_reference_decision_refuses_a_registry_or_repository_the_policy_does_not_allow(ref):
    decision = engine.reference_decision(ALLOWED, ref)
    assert not decision.admitted and [f.rule for f in decision.findings] == ["image.not-allowlisted"]


@pytest.mark.parametrize("ref", ["registry.example.org/jupyter/scipy:2026.11", "registry.example.org/jupyter/a/b:1",
                                 "python:3.12", "docker.io/library/python:3.12", f"python@sha256:{HEX}"])
def test_the_reference_decision_admits_what_the_policy_allows(ref):
    assert engine.reference_decision(ALLOWED, ref) == Decision(True)


@pytest.mark.parametrize("bad, says", [
    ("../../etc/passwd", "a path component is empty, '.' or '..'"),
    ("registry.example.org/jupyter/../../x:1", "a path component is empty, '.' or '..'"),
    ("registry.example.org//x:1", "a path component is empty, '.' or '..'"),
    ("default\x00evil", "it contains a control character"),
    ("registry.example.org/x:1\n", "it contains a control character"),
    ("UPPER/x:1", "repository names are lower case"),
    ("registry.example.org/Jupyter/x:1", "repository names are lower case"),
    ("registry.example.org/" + "a" * 500 + ":1", "image reference is too long (523 characters)"),
    ("registry.example.org/" + "a" * 256 + ":1", "repository name in "),
    ("x" * 100_000, "image reference is too long (100000 characters)"),
    ("", "empty image reference"),
    ("x:1 y", "contains whitespace"),
    (f"x@sha256:{'E' * 64}", "sha256 digests have 64 lower-case hex digits"),
])
def test_the_reference_decision_refuses_what_docker_would_not_parse_and_says_why(bad, says):
    # with every rule off that could refuse it otherwise, and an allowlist that would match it
    policy = Policy(image_allowlist=("**",), modes=(("image.tag-latest", "off"), ("image.reference-invalid", "off")))
    decision = engine.reference_decision(policy, bad)
    assert not decision.admitted
    (finding,) = decision.findings
    assert (finding.rule, finding.action) == ("image.reference-invalid", "deny") and says in finding.message
    assert len(finding.message) < 500  # a long reference is not echoed whole


def test_the_reference_invalid_rule_cannot_be_turned_down():
    for mode in ("audit", "off"):
        assert Policy(modes=(("image.reference-invalid", mode),)).problems() == [
            ("modes", f"rule 'image.reference-invalid': mode '{mode}' is not one of enforce")]
    assert Policy(modes=(("image.tag-latest", "off"),)).problems() == []


# ---- modes and defaults ---------------------------------------------------------------------
def test_audit_mode_warns_and_admits_off_skips():
    root = {"User": "root"}
    assert rules(decide(Policy(modes=(("image.user-root", "audit"),)), **root)) == {"image.user-root": "warn"}
    assert decide(Policy(modes=(("image.user-root", "audit"),)), **root).admitted
    assert decide(Policy(modes=(("image.user-root", "off"),)), **root).findings == ()
    healthless = decide(Policy(modes=(("image.no-healthcheck", "enforce"),)), Healthcheck=None)
    assert not healthless.admitted


# Rules whose risk no-new-privileges (set on every container) removes warn by default and say why;
# the rules that grant or leak something deny by default.
DENY_BY_DEFAULT = ("image.user-root", "image.baked-private-key", "image.baked-authorized-keys", "image.env-secret",
                   "sudo.interpreter-grant", "sshd.root-login", "sshd.password-auth")


def test_default_policy_warns_on_setuid_and_says_why():
    debian = {f"/usr/bin/{n}": Entry(0o4755, "file", 1) for n in ("su", "passwd", "mount", "chsh")}
    decision = decide(entries=debian)
    (finding,) = decision.findings
    assert decision.admitted and (finding.rule, finding.action) == ("image.setuid-binary", "warn")
    assert "/usr/bin/su (setuid, mode 4755)" in finding.message and "no-new-privileges" in finding.message
    enforced = decide(Policy(modes=(("image.setuid-binary", "enforce"),)), entries=debian)
    assert not enforced.admitted and "no-new-privileges" not in enforced.findings[0].message
    polluted = decide(site=("jupyterhub-6.1.1.dist-info", "evil-1.0.dist-info"))
    assert polluted.admitted and "conda channel policy" in polluted.findings[0].message


@pytest.mark.parametrize("rule", DENY_BY_DEFAULT)
def test_rules_that_matter_deny_by_default(rule):
    assert RULES[rule].default_mode == "enforce" and not RULES[rule].why_audit


def test_every_rule_that_warns_by_default_is_explained_or_advisory():
    advisory = {"image.no-healthcheck", "conda.python-eol-soon"}
    for rule in RULES.values():
        if rule.default_mode == "audit":
            assert rule.why_audit or rule.id in advisory, rule.id


def test_secret_values_never_reach_findings():
    decision = decide(Env=["API_TOKEN=supersecretvalue"])
    assert "supersecretvalue" not in json.dumps(decision.as_dict())


def test_no_conda_environment():
    assert decide(records=None).findings == ()
    decision = decide(Policy(required_packages=("jupyterhub",)), records=None)
    assert [f.message for f in decision.findings] == [
        "The image has no conda environment at /opt/conda (no conda-meta directory)."]


def test_denials_come_first_in_words():
    decision = decide(User="root", Healthcheck=None)
    assert [f.rule for f in decision.findings] == ["image.user-root", "image.no-healthcheck"]
    assert decision.explain().splitlines() == [
        "[image.user-root] The image runs as root. Fix: " + RULES["image.user-root"].remediation,
        "(warning) [image.no-healthcheck] The image has no HEALTHCHECK."]


def test_every_environment_under_envs_is_judged_and_named():
    facts, info = image()
    env = "/opt/conda/envs/legacy"
    old = record("python", "3.9.18", "h0_cpython", "linux-64", files=["bin/python3.9"])
    for path, data in {f"{env}/conda-meta/python-3.9.18-h0_cpython.json": json.dumps(old).encode()}.items():
        facts.files[path] = data
        facts.entries[path] = Entry(0o644, "file", len(data))
    facts.entries[env] = Entry(0o755, "dir", 0)
    facts.roots[f"{env}/conda-meta"] = True
    facts.roots[f"{env}/lib/python3.9/site-packages"] = True
    facts.entries[f"{env}/lib/python3.9/site-packages/stray-1.0.dist-info"] = Entry(0o755, "dir", 0)
    policy = Policy(required_packages=("jupyterhub",))
    inputs = engine.prepare(facts, engine.plan_for(policy))
    assert [e.name for e in inputs.envs] == ["", "legacy"] and inputs.records is inputs.envs[0].records
    decision = engine.evaluate(policy, REF, info, inputs, engine.Context(), DAY)
    found = {f.rule: f.message for f in decision.findings}
    assert set(found) == {"conda.python-eol", "conda.pip-pollution"}  # jupyterhub is required of the base only
    assert "in environment 'legacy' (/opt/conda/envs/legacy)" in found["conda.python-eol"]
    assert "environment 'legacy'" in found["conda.pip-pollution"] and "stray-1.0.dist-info" in found["conda.pip-pollution"]


# ---- the registry and the docs generated from it -------------------------------------------
def test_the_registry_is_every_family_in_order_each_rule_once():
    assert list(RULES.values()) == [r for f in FAMILIES for r in f.rules]
    assert [r.id for r in REFERENCE_RULES] == ["image.reference-invalid", "image.not-allowlisted", "image.tag-latest",
                                               "image.digest-required"]
    for rule in RULES.values():
        assert rule.needs <= set(NEEDS) and rule.default_mode in rule.modes, rule.id
        assert rule.summary and rule.remediation.endswith(".") and rule.protects, rule.id
        assert (DOCS / next(f.page for f in FAMILIES if f.id == rule.family)).exists()


def test_rule_docs_name_real_settings():
    from hardened_spawner.spawner import HardenedSpawner

    traits = set(HardenedSpawner.class_traits())
    named = {(rule.id, name) for rule in RULES.values() for text in (rule.when, rule.protects, rule.remediation)
             for name in re.findall(r"`?\b([a-z]+(?:_[a-z]+)+)\b", text)
             if name.startswith(("admission_", "conda_", "scan_", "pip_", "allowed_"))}
    assert {(rule, name) for rule, name in named if name not in traits} == set()
    assert ("image.too-old", "admission_max_image_age_days") in named


def test_docs_tables_are_rewritten_from_the_registry(tmp_path, capsys):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    assert docs_rules.main(["--check", str(docs)]) == 0, capsys.readouterr().err
    page = docs / "admission-content-rules.md"
    page.write_text(page.read_text().replace(RULES["image.user-root"].remediation, "run as root, it is fine"))
    assert docs_rules.main(["--check", str(docs)]) == 1
    diff = capsys.readouterr().err
    assert "-| `image.user-root`" in diff and "+| `image.user-root`" in diff and "run as root, it is fine" in diff
    assert docs_rules.main([str(docs)]) == 0 and docs_rules.main(["--check", str(docs)]) == 0
    assert page.read_text() == (DOCS / page.name).read_text()
    page.write_text(page.read_text().replace("<!-- rules: content -->", "<!-- rules: contents -->"))
    assert docs_rules.main(["--check", str(docs)]) == 2
    assert "names no rule family" in capsys.readouterr().err


def test_the_ownership_rules_take_what_a_verified_record_owns_from_its_package():
    """Names added to jupyterhub's record `files` (a pip dist-info, a bare Crypto/) own nothing its package's
    info/paths.json does not install, once the verified channel's repodata lists the record."""
    from admission_images import MD5
    from hardened_spawner.admission.channels import Listed, Package
    site = "lib/python3.11/site-packages"
    claimed = [COMPLIANT_RECORDS[0], record("jupyterhub", "6.1.1", files=[
        f"{site}/jupyterhub-6.1.1.dist-info/RECORD", f"{site}/evil-1.0.dist-info/RECORD", f"{site}/Crypto/__init__.py"])]
    names = ("jupyterhub-6.1.1.dist-info", "evil-1.0.dist-info", "Crypto")
    ownership_rules = {"conda.pip-pollution", "python.unowned-module"}
    assert not ownership_rules & {f.rule for f in decide(records=claimed, site=names).findings}  # the claim stands
    key = {id(r): ("conda.anaconda.org/conda-forge", r["subdir"], r["fn"]) for r in claimed}
    context = engine.Context(repodata={key[id(r)]: Listed("ab" * 32, MD5, 0) for r in claimed},
                             package_files={key[id(r)]: Package(tuple(f for f in r["files"] if "evil" not in f
                                                                      and "Crypto" not in f), ()) for r in claimed})
    policy = Policy(verify_channels=(("conda-forge", "https://mirror.example.org/conda-forge"),))
    found = {f.rule: f.message for f in decide(policy, records=claimed, site=names, context=context).findings}
    assert set(found) == ownership_rules, found
    assert "evil-1.0.dist-info" in found["conda.pip-pollution"] and "Crypto" in found["python.unowned-module"]
