"""The engine's read plan, the policy, the cache and the guard (the rules: test_admission_rules.py)."""

import asyncio
import io
import json
import tarfile

import pytest

from hardened_spawner.admission import engine, guard
from hardened_spawner.admission.cache import SingleFlight
from hardened_spawner.admission.facts import ReadPlan
from hardened_spawner.admission.policy import Policy, image_pattern


def test_plan_skips_site_packages_when_every_rule_reading_them_is_off():
    assert engine.plan_for(Policy()).site_packages
    readers = ("conda.pip-pollution", "python.unowned-module", "python.unowned-pth", "python.user-site",
               "conda.file-modified")
    for on in readers:  # each one alone makes site-packages (and the user sites) be read
        assert engine.plan_for(Policy(modes=tuple((r, "off") for r in readers if r != on))).site_packages
    assert not engine.plan_for(Policy(modes=tuple((r, "off") for r in readers))).site_packages
    assert not engine.plan_for(Policy(conda_envs=("analysis",))).find_prefixes
    assert not engine.plan_for(Policy(modes=(("python.unowned-module", "off"),))).nested  # owned packages masked
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


def test_owned_directories_are_ranked_by_size_and_never_escape():
    from hardened_spawner.admission.prefixes import owned_directories

    sp = "lib/python3.11/site-packages"
    big = {"paths_data": {"paths": [{"_path": f"{sp}/babel/locale/{i}.dat", "size_in_bytes": 1000} for i in range(9)]}}
    small = {"files": [f"{sp}/six.py", f"{sp}/six-1.16.0.dist-info/RECORD", f"{sp}/../../../etc/x", f"{sp}/./y/z"]}
    raw = [json.dumps(big).encode(), json.dumps(small).encode(), b"{broken", b"[]"]
    assert owned_directories(raw, "/opt/conda", f"/opt/conda/{sp}") == ["babel", "six-1.16.0.dist-info"]
    assert owned_directories(raw, "/opt/conda", f"/opt/conda/{sp}", limit=1) == ["babel"]
