"""Admission on environments a real installer wrote, and the default policy on common image shapes.

Images from rig/conda-images.sh: conda environments that py-rattler solved and installed
from the rig's private channel (served over HTTP on loopback), a real ``pip install`` on
top, and images shaped like the official single-user, a data-science and a CUDA image.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hubrig import REPO

from hardened_spawner.tools.check_image import check

pytestmark = [pytest.mark.docker]

STATE = Path(os.environ.get("HS_RIG_STATE", "/var/lib/hardened-spawner-rig"))
CONDA = {s: f"hardened-spawner/conda-{s}:test" for s in ("real", "realenvs", "realpip")}
COMMON = {s: f"hardened-spawner/common-{s}:test" for s in ("official", "datascience", "cuda", "cudaroot")}
# shape -> (admitted, {rule: action}) under the default policy
VERDICTS = {
    "official": (True, {"image.setuid-binary": "warn"}),
    "datascience": (True, {"image.setuid-binary": "warn", "conda.pip-pollution": "warn"}),
    # CUDA bases set NVIDIA_VISIBLE_DEVICES=all: audited, and the spawner overrides it with the lease
    "cuda": (True, {"image.setuid-binary": "warn", "image.gpu-env": "warn"}),
    "cudaroot": (False, {"image.user-root": "deny", "image.setuid-binary": "warn", "image.gpu-env": "warn"}),
}


@pytest.fixture(scope="module")
def images(dclient, image):
    subprocess.run(["bash", str(REPO / "rig/conda-images.sh")], check=True, capture_output=True)
    return {ref: dclient.inspect_image(ref) for ref in {**CONDA, **COMMON}.values()}


@pytest.fixture(scope="module")
def mirror(images):
    return images[CONDA["real"]]["Config"]["Labels"]["hardened-spawner.conda-mirror"]


@pytest.fixture(scope="module")
def exports(images):
    inputs = images[CONDA["real"]]["Config"]["Labels"]["hardened-spawner.test-inputs"]
    return STATE / "conda-exports" / inputs


def conda_policy(mirror, **extra):
    settings = {"conda_allowed_channels": ["conda-forge"],
                "conda_channel_mirrors": {f"{mirror}/conda-forge": "conda-forge"}, **extra}
    return {"HardenedDockerSpawner": settings}


def found(decision):
    return {f.rule: f.action for f in decision.findings}


def test_default_policy_verdicts_of_common_shapes_through_check_image(images, tmp_path):
    empty = tmp_path / "jupyterhub_config.py"
    empty.write_text("# the default policy: nothing configured\n")
    verdicts = {}
    for shape, ref in COMMON.items():
        result = subprocess.run([sys.executable, "-m", "hardened_spawner.tools.cli", "check-image", ref,
                                 "--config", str(empty), "--format", "json"], capture_output=True, text=True,
                                timeout=120, env={**os.environ, "HS_HUB_STATE": str(tmp_path / "state")})
        report = json.loads(result.stdout)
        verdicts[shape] = report
        assert result.returncode == (0 if report["admitted"] else 1)
        assert (report["admitted"], {f["rule"]: f["action"] for f in report["findings"]}) == VERDICTS[shape], report
    (REPO / "artifacts").mkdir(exist_ok=True)
    (REPO / "artifacts" / "common-image-verdicts.json").write_text(json.dumps(verdicts, indent=2) + "\n")
    setuid = next(f for f in verdicts["official"]["findings"] if f["rule"] == "image.setuid-binary")
    for binary in ("/usr/bin/su", "/usr/bin/passwd", "/usr/bin/mount", "/usr/bin/chsh"):
        assert binary in setuid["message"]
    assert "no-new-privileges" in setuid["message"]


def test_records_written_by_rattler_admit_with_the_mirror_and_both_exported_locks(images, mirror, exports):
    for lock in ("explicit.txt", "pixi.lock"):
        policy = conda_policy(mirror, conda_lock_file=str(exports / "base" / lock),
                              conda_required_packages=["jupyterhub >=6,<7", "python >=3.11"])
        decision, _ = check(CONDA["real"], policy)
        assert decision.admitted and found(decision) == {}, decision.findings
    unmapped = {"HardenedDockerSpawner": {"conda_allowed_channels": ["conda-forge"]}}
    decision, _ = check(CONDA["real"], unmapped)  # without the mirror declared, every package is off-channel
    assert found(decision) == {"conda.channel-not-allowed": "deny"}
    assert f"comes from {mirror.split('://')[1]}/conda-forge" in decision.findings[0].message


@pytest.mark.parametrize("read_layers", [True, False])
def test_every_environment_under_envs_is_read_and_named(images, mirror, read_layers):
    policy = conda_policy(mirror, conda_denied_packages=["pycrypto"], admission_read_layers=read_layers)
    decision, _ = check(CONDA["realenvs"], policy)
    messages = {f.rule: f.message for f in decision.findings}
    assert found(decision) == {"conda.python-eol": "deny", "conda.package-denied": "deny",
                               "conda.channel-not-allowed": "deny"}, decision.findings
    assert "environment 'legacy' (/opt/conda/envs/legacy)" in messages["conda.python-eol"]
    assert "Python 3.9.18" in messages["conda.python-eol"]
    assert "environment 'crypto'" in messages["conda.package-denied"] and "pycrypto 2.6.1" in messages["conda.package-denied"]
    assert "environment 'vendor'" in messages["conda.channel-not-allowed"]
    assert "hs-telemetry 0.1" in messages["conda.channel-not-allowed"] and "evil-channel" in messages["conda.channel-not-allowed"]
    assert "analysis" not in json.dumps(messages)
    named = conda_policy(mirror, conda_envs=["analysis"], admission_read_layers=read_layers)
    assert check(CONDA["realenvs"], named)[0].findings == ()  # only the named env is read


def test_a_real_pip_install_on_top_is_pip_pollution(images, mirror):
    decision, _ = check(CONDA["realpip"], conda_policy(mirror))
    (finding,) = decision.findings
    assert (finding.rule, finding.action) == ("conda.pip-pollution", "warn") and decision.admitted
    assert "environment 'analysis'" in finding.message and "idna-" in finding.message
    enforced = conda_policy(mirror, admission_rule_modes={"conda.pip-pollution": "enforce"})
    assert not check(CONDA["realpip"], enforced)[0].admitted


@pytest.mark.hub
def test_official_shape_and_real_conda_env_spawn_under_the_default_policy(make_hub, dclient, images):
    hub = make_hub(f"c.HardenedDockerSpawner.allowed_images = {{'official': {COMMON['official']!r}, "
                   f"'conda': {CONDA['real']!r}}}\n", name="common-hub")
    for name, user in (("official", "shape-official"), ("conda", "shape-conda")):
        events = hub.spawn_and_wait(user, {"image": name})
        assert events[-1].get("ready"), events[-1]
        warnings = [e["message"] for e in events if "Image policy warnings" in e.get("message", "")]
        assert bool(warnings) == (name == "official"), warnings
        hub.stop_server(user)
