"""What the published-suite runners share: two runs at once, per-test outcomes, the KNOWN comparison.

Each runner (test_dockerspawner_suite.py, test_oauthenticator_suite.py) runs an
upstream project's own test modules twice in two pytest processes at the same
time: ``plain`` (the upstream class) and ``hardened`` (ours swapped in by a
plugin). A drop-in replacement passes whatever the upstream class passes; where
it does not, by design, the test is listed in the runner's ``KNOWN`` with the
reason and a text that identifies the failure. A ``KNOWN`` key is a test id
(``module.test[params]``), or a prefix of test ids followed by ``*``.
"""

import contextlib
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE.parent.parent / "artifacts"
KINDS = ("plain", "hardened")


def outcomes(junit):
    """``{module.test[params]: (outcome, message)}`` from a JUnit XML file; outcome passed/failure/error/skipped."""
    found = {}
    for case in ET.parse(junit).iter("testcase"):
        name = f"{case.get('classname').rsplit('.', 1)[-1]}.{case.get('name')}"
        problem = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        found[name] = ("passed", "") if problem is None else (
            problem.tag, (problem.get("message") or "") + "\n" + (problem.text or ""))
    return found


def run_both(name, pytest_args, env_var, cwd, tmp_path_factory, timeout=900):
    """Run ``pytest_args`` (plugin, ini, modules) once per kind, at the same time; the per-test outcomes.

    ``env_var`` tells the plugin which kind it runs. Writes artifacts/upstream-<name>-<kind>.{xml,log}
    and artifacts/upstream-<name>.json (pass counts, what did not pass, seconds).
    """
    ARTIFACTS.mkdir(exist_ok=True)
    junit = {kind: ARTIFACTS / f"upstream-{name}-{kind}.xml" for kind in KINDS}
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        procs = {}
        for kind in KINDS:
            log = stack.enter_context(open(ARTIFACTS / f"upstream-{name}-{kind}.log", "w"))
            procs[kind] = subprocess.Popen(
                [sys.executable, "-m", "pytest", *pytest_args, "-p", "no:cacheprovider", "-q", "--tb=short",
                 f"--basetemp={tmp_path_factory.mktemp(f'upstream-{name}-{kind}')}", f"--junitxml={junit[kind]}"],
                cwd=cwd, env={**os.environ, env_var: kind, "PYTHONPATH": str(HERE)},
                stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            for proc in procs.values():
                proc.wait(timeout=timeout)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    runs = {kind: outcomes(junit[kind]) for kind in KINDS}
    summary = {kind: {"passed": sum(o == "passed" for o, _ in r.values()), "total": len(r),
                      "not_passed": {t: msg.strip().splitlines()[0] if msg.strip() else o
                                     for t, (o, msg) in sorted(r.items()) if o != "passed"}}
               for kind, r in runs.items()}
    summary["seconds"] = round(time.monotonic() - started, 1)
    (ARTIFACTS / f"upstream-{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(name, json.dumps({k: (v["passed"], v["total"]) for k, v in summary.items() if k in KINDS}),
          summary["seconds"], "s")
    return runs


def _matches(key, test):
    return test == key or (key.endswith("*") and test.startswith(key[:-1]))


def known_entry(known, test):
    """``(reason, marker)`` of the KNOWN entry for ``test`` (its id, else the first matching prefix), or None."""
    if test in known:
        return known[test]
    return next((entry for key, entry in known.items() if _matches(key, test)), None)


def regressions(known, runs):
    """Tests the plain class passes and the hardened one does not, unexplained by KNOWN: ``{test: message}``."""
    found = {}
    for test, (outcome, _) in runs["plain"].items():
        h_outcome, message = runs["hardened"][test]
        if outcome == "passed" and h_outcome != "passed":
            reason, marker = known_entry(known, test) or (None, None)
            if reason is None or marker not in message:
                found[test] = message.strip()[:500]
    return found


def stale(known, runs):
    """KNOWN entries to remove: one that matches no collected test, or a test the hardened class passes."""
    hardened = runs["hardened"]
    found = []
    for key in known:
        tests = [t for t in hardened if _matches(key, t)]
        if not tests or any(hardened[t][0] == "passed" for t in tests):
            found.append(key)
    return found

