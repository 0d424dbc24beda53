"""DockerSpawner's own published tests, run with DockerSpawner and with HardenedDockerSpawner.

The modules come from the dockerspawner source distribution on the package index, at
the version installed here (pip download, cached under the rig's state directory;
never copied into this repository). upstream_plugin.py supplies the fixtures their
missing conftest.py would have and swaps the class. The two runs go at the same time, in
two pytest processes on the rig's daemon (each its own MockHub, ports, container prefix
and users); the per-test outcomes, the pass counts and the time are written to
artifacts/upstream-dockerspawner.json.

A drop-in replacement passes whatever DockerSpawner passes. Where it does not, by
design, the test and the reason are listed in ``KNOWN`` (each with the error text that
identifies it), so a new regression fails here and a fixed one shows up as a stale
entry.
"""

import contextlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.hub]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STATE = Path(os.environ.get("HS_RIG_STATE", "/var/lib/hardened-spawner-rig"))
MODULES = ("tests/test_dockerspawner.py", "tests/test_deprecations.py")
KINDS = ("plain", "hardened")
# test id -> (why HardenedDockerSpawner fails it, text that identifies the failure)
KNOWN = {
    "test_deprecations.test_deprecated_config": (
        "by design: traitlets names the configured class, HardenedDockerSpawner, in the deprecation message",
        "HardenedDockerSpawner.image_whitelist is deprecated"),
    **{f"test_dockerspawner.test_cpu_limit[{p}]": (
        "by design: every container gets a CPU limit; cpu_limit=None is refused as unsafe configuration",
        "(rules: HardenedDockerSpawner.cpu_limit)") for p in ("None-None", "<lambda>-None")},
    "test_dockerspawner.test_default_options_form": (
        "by design: with a choice to make, the form is rendered per user (only the images and profiles "
        "their groups allow, limits in words), not DockerSpawner's fixed HTML; with none it is '' as upstream",
        "UserOptions._default_options_form"),
    **{f"test_dockerspawner.test_allowed_image[{p}]": (
        "by design (hole 2 of docs/security.md): the container is created from the admitted image Id, "
        "so Docker records the Id, not the tag, as Config.Image; a tag moved after admission cannot run",
        "assert 'sha256:") for p in (
            "*-quay.io/jupyterhub/singleuser:4-True", "None-None-True", "allowed_images0-4.0-True",
            "allowed_images1-None-True", "allowed_images3-quay.io/jupyterhub/singleuser:4-True",
            "allowed_images_callable-quay.io/jupyterhub/singleuser:4.0-True")},
    **{f"test_dockerspawner.test_allowed_image[{p}]": (
        "by design (docs/refusals.md): an image the user may not use is 403 Forbidden with a reason, "
        "findings and a reference id; DockerSpawner answers 400",
        "assert 403 == 400") for p in (
            "None-DEFAULT-False", "allowed_images2-not-in-list-False",
            "allowed_images_callable-quay.io/jupyterhub/singleuser:3.0-False")},
    "test_dockerspawner.test_post_start": (
        "by design: busybox runs as root and the default policy denies root images (image.user-root)",
        "image.user-root"),
}


def sdist_tests():
    """The extracted test modules of the installed dockerspawner's sdist (downloaded once)."""
    version = importlib.metadata.version("dockerspawner")
    root = STATE / "upstream" / f"dockerspawner-{version}"
    if not all((root / m).is_file() for m in MODULES):
        download = STATE / "upstream" / "sdist"
        download.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                        "--no-binary", ":all:", "-d", str(download), f"dockerspawner=={version}"], check=True)
        (archive,) = download.glob(f"dockerspawner-{version}.tar.gz")
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(f"dockerspawner-{version}/tests/")]
            tar.extractall(root.parent, members=members, filter="data")
    return root


def start_suite(root, kind, out, basetemp, log):
    """Start one run of the published modules (``kind``: plain or hardened) in its own pytest process."""
    env = {**os.environ, "HS_UPSTREAM_SPAWNER": kind, "PYTHONPATH": str(HERE)}
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "upstream_plugin", "-c", str(HERE / "pytest.ini"), "--rootdir", str(root),
         "-p", "no:cacheprovider", "-q", "--tb=short", f"--basetemp={basetemp}", f"--junitxml={out / f'upstream-{kind}.xml'}",
         *MODULES],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def outcomes(junit):
    found = {}
    for case in ET.parse(junit).iter("testcase"):
        name = f"{case.get('classname').rsplit('.', 1)[-1]}.{case.get('name')}"
        problem = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        found[name] = ("passed", "") if problem is None else (
            problem.tag, (problem.get("message") or "") + "\n" + (problem.text or ""))
    return found


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Both runs at once (they wait on servers more than they compute; separate hubs, ports,
    container prefixes and users on the one daemon), then their per-test outcomes."""
    root = sdist_tests()
    out = REPO / "artifacts"
    out.mkdir(exist_ok=True)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        procs = {kind: start_suite(root, kind, out, tmp_path_factory.mktemp(f"upstream-{kind}"),
                                   stack.enter_context(open(out / f"upstream-{kind}.log", "w"))) for kind in KINDS}
        try:
            for proc in procs.values():
                proc.wait(timeout=900)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    runs = {kind: outcomes(out / f"upstream-{kind}.xml") for kind in KINDS}
    summary = {kind: {"passed": sum(o == "passed" for o, _ in r.values()), "total": len(r),
                      "not_passed": {t: msg.strip().splitlines()[0] if msg.strip() else o
                                     for t, (o, msg) in sorted(r.items()) if o != "passed"}}
               for kind, r in runs.items()}
    summary["seconds"] = round(time.monotonic() - started, 1)
    (out / "upstream-dockerspawner.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: (v["passed"], v["total"]) for k, v in summary.items() if k in KINDS}), summary["seconds"], "s")
    return runs


def test_both_runs_collected_the_whole_published_suite(results):
    assert results["plain"].keys() == results["hardened"].keys()
    assert len(results["plain"]) >= 30, sorted(results["plain"])


def test_hardened_passes_what_plain_passes_except_known(results):
    plain, hardened = results["plain"], results["hardened"]
    regressions = {}
    for test, (outcome, _) in plain.items():
        h_outcome, message = hardened[test]
        if outcome == "passed" and h_outcome != "passed":
            reason, marker = KNOWN.get(test, (None, None))
            if reason is None or marker not in message:
                regressions[test] = message.strip()[:500]
    assert regressions == {}
    passed = {kind: sum(o == "passed" for o, _ in r.values()) for kind, r in results.items()}
    expected_gap = sum(1 for t in KNOWN if t in plain and plain[t][0] == "passed" and hardened[t][0] != "passed")
    assert passed["hardened"] >= passed["plain"] - expected_gap, passed


def test_known_failures_are_still_failures(results):
    """Remove an entry from KNOWN once the hardened class passes that test."""
    fixed = [t for t in KNOWN if results["hardened"].get(t, ("missing",))[0] == "passed"]
    assert fixed == []
