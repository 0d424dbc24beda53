"""Every admission rule through the engine, rule modes, the policy, the cache and the guard."""

import asyncio
import datetime
import io
import json
import tarfile

import pytest

from hardened_spawner.admission import engine, guard, model
from hardened_spawner.admission.cache import SingleFlight
from hardened_spawner.admission.facts import Entry, ImageFacts, ReadPlan
from hardened_spawner.admission.evidence import Evidence
from hardened_spawner.admission.policy import Policy, image_pattern
from hardened_spawner.admission.signing import TrustRule

DAY = datetime.date(2026, 11, 25)
SP = "/opt/conda/lib/python3.11/site-packages"
FORGE = "https://conda.anaconda.org/conda-forge"
HEX = "e" * 64
PASSWD = b"root:x:0:0:root:/root:/bin/bash\njovyan:x:1000:100::/home/jovyan:/bin/bash\n"
GOOD_SSHD = b"PermitRootLogin no\nAuthenticationMethods publickey\n"
KEYED = TrustRule(("example.org/**",), keys=("/etc/jupyterhub/cosign.pub",))


def record(name, version, build="pyhd8ed1ab_0", subdir="noarch", channel=FORGE, files=()):
    fn = f"{name}-{version}-{build}.conda"
    return {"name": name, "version": version, "build": build, "build_number": 0, "subdir": subdir,
            "channel": f"{channel}/{subdir}", "url": f"{channel}/{subdir}/{fn}", "fn": fn, "depends": [],
            "md5": "0123456789abcdef0123456789abcdef", "sha256": "ab" * 32, "files": list(files),
            "paths_data": {"paths": [], "paths_version": 1}, "link": {"source": "/x", "type": 1}}


COMPLIANT_RECORDS = [record("python", "3.11.2", "hab00c5b_0_cpython", "linux-64", files=["bin/python3.11"]),
                     record("jupyterhub", "6.1.1", files=["lib/python3.11/site-packages/jupyterhub-6.1.1.dist-info/RECORD"])]


def image(files=None, entries=None, records=COMPLIANT_RECORDS, site=("jupyterhub-6.1.1.dist-info",), **config):
    facts = ImageFacts()
    base = {"/etc/passwd": PASSWD, "/etc/group": b"root:x:0:\nusers:x:100:\n", "/etc/ssh/sshd_config": GOOD_SSHD}
    for path, data in {**base, **(files or {})}.items():
        facts.files[path] = data
        facts.entries[path] = Entry(0o644, "file", len(data))
    for path, entry in (entries or {}).items():
        facts.entries[path] = entry
    for root in ("/etc/passwd", "/etc/ssh", "/usr/bin"):
        facts.roots[root] = True
    if records is not None:
        facts.roots["/opt/conda/conda-meta"] = True
        for rec in records:
            path = f"/opt/conda/conda-meta/{rec['name']}-{rec.get('version', 0)}-{rec.get('build', 0)}.json"
            facts.files[path] = json.dumps(rec).encode()
            facts.entries[path] = Entry(0o644, "file", len(facts.files[path]))
        facts.roots[SP] = True
        for name in site:
            facts.entries[f"{SP}/{name}"] = Entry(0o755, "dir", 0)
    info = {"Id": f"sha256:{HEX}", "RepoDigests": [], "Created": "2026-11-01T10:00:00.0Z",
            "Config": {"User": "1000:100", "Env": ["PATH=/usr/bin", "GPG_KEY=ABCDEF"],
                       "Healthcheck": {"Test": ["CMD", "hs-healthcheck"]}, **config}}
    return facts, info


def decide(policy=None, ref="example.org/jupyter/img:1", files=None, entries=None, context=None, **kwargs):
    policy = policy or Policy()
    facts, info = image(files, entries, **kwargs)
    inputs = engine.prepare(facts, engine.plan_for(policy))
    context = context or engine.Context()
    return engine.evaluate(policy, ref, info, inputs, context, DAY)


def rules(decision):
    return {f.rule: f.action for f in decision.findings}


def test_a_clean_image_is_admitted():
    decision = decide()
    assert decision.admitted and decision.findings == () and decision.digest == f"sha256:{HEX}"


@pytest.mark.parametrize("kwargs, rule", [
    ({"ref": "example.org/jupyter/img"}, "image.tag-latest"),
    ({"ref": "example.org/jupyter/img:latest"}, "image.tag-latest"),
    ({"policy": Policy(image_allowlist=("registry.example.org/**",))}, "image.not-allowlisted"),
    ({"policy": Policy(require_digest=True)}, "image.digest-required"),
    ({"User": ""}, "image.user-root"),
    ({"User": "root:root"}, "image.user-root"),
    ({"User": "0"}, "image.user-root"),
    ({"User": "00"}, "image.user-root"),
    ({"User": "+0:100"}, "image.user-root"),
    ({"User": "toor", "files": {"/etc/passwd": PASSWD + b"toor:x:0:0::/root:/bin/sh\n"}}, "image.user-root"),
    ({"User": "nobody"}, "image.user-unknown"),
    ({"User": "1000:wheel"}, "image.user-unknown"),
    ({"Env": ["NVIDIA_VISIBLE_DEVICES=all"]}, "image.gpu-env"),
    ({"files": {"/home/jovyan/.ssh/id_rsa": b"-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n"}}, "image.baked-private-key"),
    ({"files": {"/root/.ssh/deploy.pem": b"-----BEGIN RSA PRIVATE KEY-----\n"}}, "image.baked-private-key"),
    ({"files": {"/etc/ssh/ssh_host_ed25519_key": b"anything"}}, "image.baked-private-key"),
    ({"files": {"/home/jovyan/.ssh/authorized_keys": b"ssh-ed25519 AAAAC3Nza alice\n"}}, "image.baked-authorized-keys"),
    ({"files": {"/etc/ssh/authorized_keys/jovyan": b"ssh-rsa AAAAB3Nza bob\n"}}, "image.baked-authorized-keys"),
    ({"Env": ["GITHUB_TOKEN=ghp_x"]}, "image.env-secret"),
    ({"Env": ["AWS_SECRET_ACCESS_KEY=x"]}, "image.env-secret"),
    ({"Env": ["DB_PASSWORD=hunter2"]}, "image.env-secret"),
    ({"files": {"/etc/ssh/sshd_config": b"PermitRootLogin yes\nAuthenticationMethods publickey\n"}}, "sshd.root-login"),
    ({"files": {"/etc/ssh/sshd_config": b"PermitRootLogin no\nPasswordAuthentication yes\n"}}, "sshd.password-auth"),
    ({"files": {"/etc/sudoers.d/dev": b"jovyan ALL=(ALL) NOPASSWD: /opt/conda/bin/*\n"}}, "sudo.interpreter-grant"),
    ({"files": {"/etc/sudoers.d/dev": b"jovyan ALL=(ALL) NOPASSWD: /usr/bin/id\n"}}, "sudo.nopasswd"),
    ({"entries": {"/usr/bin/su": Entry(0o4755, "file", 10)}}, "image.setuid-binary"),
    ({"entries": {"/usr/bin/wall": Entry(0o2755, "file", 10)}}, "image.setuid-binary"),
    ({"policy": Policy(max_image_age_days=10)}, "image.too-old"),
    ({"Healthcheck": {"Test": ["NONE"]}}, "image.no-healthcheck"),
    ({"Healthcheck": None}, "image.no-healthcheck"),
    ({"records": COMPLIANT_RECORDS + [{"name": "broken"}]}, "conda.record-invalid"),
    ({"policy": Policy(allowed_channels=("conda-forge",)),
      "records": COMPLIANT_RECORDS + [record("evil", "1", channel="https://repo.example.com/evil")]},
     "conda.channel-not-allowed"),
    ({"records": [record("python", "3.9.18", "h0_cpython", "linux-64")]}, "conda.python-eol"),
    ({"records": [record("python", "3.10.14", "h0_cpython", "linux-64")],
      "policy": Policy(python_eol_dates=(("3.10", "2027-01-01"),))}, "conda.python-eol-soon"),
    ({"policy": Policy(denied_packages=("jupyterhub <7",))}, "conda.package-denied"),
    ({"policy": Policy(required_packages=("numpy",))}, "conda.package-required"),
    ({"policy": Policy(lock_file="/lock"), "context": engine.Context(lock=[])}, "conda.lock-mismatch"),
    ({"policy": Policy(lock_file="/lock"), "context": engine.Context(lock=engine.locks.LockError("/lock: broken"))},
     "conda.lock-invalid"),
    ({"site": ("jupyterhub-6.1.1.dist-info", "evil-1.0.dist-info")}, "conda.pip-pollution"),
    ({"policy": Policy(scan_report_dir="/reports")}, "scan.report-missing"),
    ({"policy": Policy(scan_report_dir="/reports"),
      "context": engine.Context(report_problems=("/reports/x.json: not JSON",), report_files=("/reports/x.json",))},
     "scan.report-invalid"),
    ({"policy": Policy(scan_report_dir="/reports"),
      "context": engine.Context(vulns=(engine.reports.Vulnerability("CVE-2024-1", "openssl", "3.0", "critical"),),
                                report_files=("/reports/x.json",))}, "scan.severity-threshold"),
    ({"context": engine.Context(signatures=Evidence("example.org/jupyter/img"))}, "image.signature"),
    ({"context": engine.Context(signatures=Evidence("example.org/jupyter/img", KEYED))}, "image.signature-missing"),
    ({"context": engine.Context(signatures=Evidence("example.org/jupyter/img", KEYED, error="connection refused"))},
     "image.signature-unverifiable"),
])
def test_each_rule_fires(kwargs, rule):
    decision = decide(**kwargs)
    assert rule in rules(decision), decision.findings
    finding = next(f for f in decision.findings if f.rule == rule)
    assert finding.message and finding.remediation == model.RULES[rule].remediation
    assert finding.action == ("deny" if model.RULES[rule].default_mode == "enforce" else "warn")
    assert decision.admitted == (finding.action == "warn" and not decision.denials)


def test_every_rule_is_covered_by_the_table_above():
    (mark,) = [m for m in test_each_rule_fires.pytestmark if m.name == "parametrize"]
    covered = {rule for _, rule in mark.args[1]}
    assert covered == set(model.RULES), set(model.RULES) - covered


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
    assert model.RULES[rule].default_mode == "enforce" and not model.RULES[rule].why_audit


def test_every_rule_that_warns_by_default_is_explained_or_advisory():
    advisory = {"image.no-healthcheck", "conda.python-eol-soon"}
    for rule in model.RULES.values():
        if rule.default_mode == "audit":
            assert rule.why_audit or rule.id in advisory, rule.id


def test_secret_values_never_reach_findings():
    decision = decide(Env=["API_TOKEN=supersecretvalue"])
    assert "supersecretvalue" not in json.dumps(decision.as_dict())


def test_allowed_setuid_and_root_only_sudo_grants_pass():
    policy = Policy(setuid_allowlist=("/usr/bin/passwd",))
    assert decide(policy, entries={"/usr/bin/passwd": Entry(0o4755, "file", 1)}).findings == ()
    assert decide(files={"/etc/sudoers": b"root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n"}).findings == ()
    members = {"/etc/sudoers": b"%sudo ALL=(ALL:ALL) ALL\n", "/etc/group": b"sudo:x:27:jovyan\n"}
    assert "sudo.interpreter-grant" in rules(decide(files=members))


def test_no_conda_environment():
    assert decide(records=None).findings == ()
    decision = decide(Policy(required_packages=("jupyterhub",)), records=None)
    assert [f.message for f in decision.findings] == [
        "The image has no conda environment at /opt/conda (no conda-meta directory)."]


def test_denials_come_first_in_words():
    decision = decide(User="root", Healthcheck=None)
    assert [f.rule for f in decision.findings] == ["image.user-root", "image.no-healthcheck"]
    assert decision.explain().splitlines() == [
        "[image.user-root] The image runs as root. Fix: " + model.RULES["image.user-root"].remediation,
        "(warning) [image.no-healthcheck] The image has no HEALTHCHECK."]


def test_plan_skips_site_packages_when_pip_rule_is_off():
    assert engine.plan_for(Policy()).site_packages
    assert not engine.plan_for(Policy(modes=(("conda.pip-pollution", "off"),))).site_packages
    assert engine.plan_for(Policy(sshd_config="/opt/ssh/sshd_config")) == ReadPlan(
        sshd_config="/opt/ssh/sshd_config", extra_files=("/var/lib/dpkg/status",))


# ---- policy ----------------------------------------------------------------------
@pytest.mark.parametrize("pattern, name, match", [
    ("registry.example.org/jupyter/*", "registry.example.org/jupyter/scipy", True),
    ("registry.example.org/jupyter/*", "registry.example.org/jupyter/a/b", False),
    ("registry.example.org/jupyter/**", "registry.example.org/jupyter/a/b", True),
    ("hardened-spawner/*", "docker.io/hardened-spawner/singleuser", True),
    ("python", "docker.io/library/python", True),
    ("localhost:5000/x", "localhost:5000/x", True),
    ("quay.io/jupyter/*", "docker.io/jupyter/scipy", False),
])
def test_image_patterns(pattern, name, match):
    assert bool(image_pattern(pattern).match(name)) == match


@pytest.mark.parametrize("bad", ["UPPER/x", "x:tag", "x@sha256:abc", "a//b", "x/", "", "sp ace"])
def test_bad_image_patterns(bad):
    with pytest.raises(ValueError):
        image_pattern(bad)


def test_policy_problems_name_settings(tmp_path):
    problems = Policy(modes=(("nope", "enforce"), ("image.user-root", "warn")), image_allowlist=("BAD",),
                      max_image_age_days=-1, allowed_channels=("ftp://x/y",), python_eol_dates=(("3", "soon"),),
                      denied_packages=(">>x",), lock_file=str(tmp_path / "missing.lock"), scan_deny_severity="severe",
                      scan_report_dir=str(tmp_path / "none"), scan_cve_allowlist=(("whatever", "2026-01-01"),),
                      sshd_config="relative").problems("S.")
    settings = [s for s, _ in problems]
    # Policy names its own fields; the spawner's settings map them to trait names
    # (tests/unit/test_admission_config.py checks what admins read).
    for expected in ("S.modes", "S.image_allowlist", "S.max_image_age_days",
                     "S.allowed_channels", "S.python_eol_dates", "S.denied_packages",
                     "S.scan_deny_severity", "S.scan_cve_allowlist", "S.sshd_config"):
        assert expected in settings, (expected, problems)
    assert Policy().problems() == []


def test_file_problems_read_the_lock_file_and_report_dir(tmp_path):
    policy = Policy(lock_file=str(tmp_path / "missing.lock"), scan_report_dir=str(tmp_path / "none"))
    assert policy.problems() == []  # no file I/O on the spawn path
    assert [s for s, _ in policy.file_problems("S.")] == ["S.lock_file", "S.scan_report_dir"]
    assert Policy(scan_report_dir=str(tmp_path)).file_problems() == []


def test_policy_digest_changes_with_any_setting_and_the_lock_file(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("@EXPLICIT\n")
    base = Policy(lock_file=str(lock))
    assert base.digest() == Policy(lock_file=str(lock)).digest()
    assert base.digest() != Policy(lock_file=str(lock), require_digest=True).digest()
    before = base.digest()
    lock.write_text("@EXPLICIT\nhttps://x.org/c/noarch/a-1-0.conda\n")
    assert base.digest() != before


# ---- cache -------------------------------------------------------------------------
async def test_single_flight_computes_once_for_concurrent_callers():
    cache, calls = SingleFlight(2), []

    async def compute():
        calls.append(1)
        await asyncio.sleep(0.05)
        return "value"

    results = await asyncio.gather(*(cache.get("k", compute) for _ in range(20)))
    assert len(calls) == 1
    assert sorted(how for _, how in results) == ["computed"] + ["shared"] * 19
    assert await cache.get("k", compute) == ("value", "cached")


async def test_failures_are_not_cached_and_cancellation_does_not_cancel_others():
    cache = SingleFlight(2)

    async def boom():
        raise RuntimeError("docker down")

    with pytest.raises(RuntimeError):
        await cache.get("k", boom)
    started = asyncio.Event()

    async def slow():
        started.set()
        await asyncio.sleep(0.05)
        return 1

    first = asyncio.ensure_future(cache.get("k", slow))
    await started.wait()
    second = asyncio.ensure_future(cache.get("k", slow))
    first.cancel()
    assert await second == (1, "shared")


async def test_cache_is_bounded():
    cache = SingleFlight(2)

    async def value():
        return 1

    for key in "abc":
        await cache.get(key, value)
    assert len(cache) == 2 and (await cache.get("a", value))[1] == "computed"


# ---- guard -------------------------------------------------------------------------
def test_condarc_and_pip_files():
    policy = Policy(allowed_channels=("conda-forge", "https://conda.example.org/internal"),
                    channel_mirrors=(("https://mirror.example.org/cf", "conda-forge"),))
    files = guard.policy_files(policy, "https://pypi.example.org/simple", ("https://extra.example.org/simple",))
    assert set(files) == {"etc/conda/.condarc", "etc/pip.conf", "opt/conda/pip.conf"}
    rc = files["etc/conda/.condarc"]
    assert "channels:  #!final\n  - \"conda-forge\"\n  - \"https://conda.example.org/internal\"\n" in rc
    assert "allowlist_channels:  #!final" in rc and '"https://mirror.example.org/cf"' in rc
    assert 'channel_alias: "https://conda.anaconda.org"  #!final' in rc
    assert "index-url = https://pypi.example.org/simple\nextra-index-url = https://extra.example.org/simple\n" \
        in files["etc/pip.conf"]
    assert guard.policy_files(Policy(), "", ()) == {}
    with tarfile.open(fileobj=io.BytesIO(guard.archive(files))) as tar:
        assert {(m.name, m.mode, m.uid, m.isdir()) for m in tar} == {
            ("etc/conda", 0o755, 0, True), ("etc/conda/.condarc", 0o644, 0, False),
            ("etc/pip.conf", 0o644, 0, False), ("opt/conda/pip.conf", 0o644, 0, False)}


def test_drift_ignores_parent_dirs_and_delivered_files():
    changes = [{"Path": "/opt/conda", "Kind": 0}, {"Path": "/opt/conda/pip.conf", "Kind": 1},
               {"Path": "/opt/conda/lib", "Kind": 0}, {"Path": "/opt/conda/lib/python3.11", "Kind": 0},
               {"Path": "/opt/conda/lib/python3.11/site-packages", "Kind": 0},
               {"Path": "/opt/conda/lib/python3.11/site-packages/evil", "Kind": 1},
               {"Path": "/opt/conda/conda-meta/x.json", "Kind": 2}, {"Path": "/opt/condaX/y", "Kind": 1}]
    assert guard.drift(changes, "/opt/conda", {"opt/conda/pip.conf": ""}) == {
        "total": 2, "added": 1, "changed": 0, "deleted": 1,
        "paths": ["added /opt/conda/lib/python3.11/site-packages/evil", "deleted /opt/conda/conda-meta/x.json"]}
    assert guard.drift([{"Path": "/opt/conda/bin/python3", "Kind": 0}], "/opt/conda")["changed"] == 1


# ---- environments under <prefix>/envs ---------------------------------------------------
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
    decision = engine.evaluate(policy, "example.org/jupyter/img:1", info, inputs, engine.Context(), DAY)
    found = {f.rule: f.message for f in decision.findings}
    assert set(found) == {"conda.python-eol", "conda.pip-pollution"}  # jupyterhub is required of the base only
    assert "in environment 'legacy' (/opt/conda/envs/legacy)" in found["conda.python-eol"]
    assert "environment 'legacy'" in found["conda.pip-pollution"] and "stray-1.0.dist-info" in found["conda.pip-pollution"]


def test_owned_directories_are_ranked_by_size_and_never_escape():
    from hardened_spawner.admission.facts import owned_directories

    sp = "lib/python3.11/site-packages"
    big = {"paths_data": {"paths": [{"_path": f"{sp}/babel/locale/{i}.dat", "size_in_bytes": 1000} for i in range(9)]}}
    small = {"files": [f"{sp}/six.py", f"{sp}/six-1.16.0.dist-info/RECORD", f"{sp}/../../../etc/x", f"{sp}/./y/z"]}
    raw = [json.dumps(big).encode(), json.dumps(small).encode(), b"{broken", b"[]"]
    assert owned_directories(raw, "/opt/conda", f"/opt/conda/{sp}") == ["babel", "six-1.16.0.dist-info"]
    assert owned_directories(raw, "/opt/conda", f"/opt/conda/{sp}", limit=1) == ["babel"]
