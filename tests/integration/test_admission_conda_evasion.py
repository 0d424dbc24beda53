"""Ways around the conda policy, as an image owner would try them (issue 23), each a real image.

Images from rig/conda-evasion-images.sh (tests/images/conda-evasion.Dockerfile), built on the real
conda image of rig/conda-images.sh. The policy is the strict one an admin would write: approved
channel through the rig's mirror, the exported lock file, ``pycrypto`` denied and
``conda.pip-pollution`` enforced. Each image is refused with its rule, and admitted when the policy
turns that rule off (so that rule is what refuses it); the real image stays admitted.
"""

import os
import subprocess
from pathlib import Path

import pytest
from hubrig import REPO

from hardened_spawner.tools.check_image import check

pytestmark = [pytest.mark.docker]

STATE = Path(os.environ.get("HS_RIG_STATE", "/var/lib/hardened-spawner-rig"))
REAL = "hardened-spawner/conda-real:test"
# stage -> (the rule that refuses it, words its finding must hold, what the image really does)
EVASIONS = {
    "bare": ("python.unowned-module", "/opt/conda/lib/python3.11/site-packages/Crypto",
             ("/opt/conda/bin/python", "import Crypto; print(Crypto.__file__)"), "site-packages/Crypto/__init__.py"),
    "pth": ("python.unowned-pth", "/opt/conda/lib/python3.11/site-packages/evasion.pth",
            ("/opt/conda/bin/python", "pass"), "evasion.pth ran"),
    "prefix": ("conda.package-denied", "environment /opt/other (outside the conda prefix): pycrypto 2.6.1",
               ("/opt/other/bin/python", "import Crypto; print(Crypto.__file__)"), "/opt/other/lib/python3.11"),
    "shadow": ("python.import-env", "PYTHONPATH=/opt/shadow",
               ("/opt/conda/bin/python", "import tornado; print(tornado.version)"), "shadowed"),
    "loaderenv": ("python.import-env", "PYTHONSTARTUP=/opt/startup.py; PYTHONHOME=/opt/conda; "
                  "LD_PRELOAD=/opt/preload.so; LD_LIBRARY_PATH names /opt/lib", None, None),
    # the rig's conda Python is a venv shim (no user site); Debian's python3 in the image imports it
    "usersite": ("python.user-site", "/home/jovyan/.local/lib/python3.11/site-packages holds usersite_evasion.py",
                 ("/usr/bin/python3", "import usersite_evasion; print(usersite_evasion.__file__)"),
                 "/home/jovyan/.local/lib/python3.11/site-packages/usersite_evasion.py"),
}


@pytest.fixture(scope="module")
def images(dclient, image):
    for script in ("rig/conda-images.sh", "rig/conda-evasion-images.sh"):
        subprocess.run(["bash", str(REPO / script)], check=True, capture_output=True)
    return {stage: f"hardened-spawner/conda-evade-{stage}:test" for stage in EVASIONS}


@pytest.fixture(scope="module")
def strict(dclient, images):
    labels = dclient.inspect_image(REAL)["Config"]["Labels"]
    mirror, inputs = labels["hardened-spawner.conda-mirror"], labels["hardened-spawner.test-inputs"]

    def policy(read_layers=True, **modes):
        return {"HardenedDockerSpawner": {
            "conda_allowed_channels": ["conda-forge"], "conda_channel_mirrors": {f"{mirror}/conda-forge": "conda-forge"},
            "conda_denied_packages": ["pycrypto"], "admission_read_layers": read_layers,
            "conda_lock_file": str(STATE / "conda-exports" / inputs / "base" / "explicit.txt"),
            "admission_rule_modes": {"conda.pip-pollution": "enforce", **modes}}}
    return policy


def found(decision):
    return {f.rule: f.action for f in decision.findings}


def test_each_evasion_really_imports_what_no_record_accounts_for(dclient, images):
    for stage, (_, _, run, shows) in EVASIONS.items():
        if run is None:
            continue
        out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", run[0], images[stage],
                              "-c", run[1]], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and shows in out.stdout + out.stderr, (stage, out)


@pytest.mark.parametrize("stage", list(EVASIONS))
def test_evasion_is_refused_by_its_rule_and_admitted_with_the_rule_off(images, strict, stage):
    rule, words, _, _ = EVASIONS[stage]
    decision, _ = check(images[stage], strict())
    assert not decision.admitted and found(decision) == {rule: "deny"}, decision.findings
    assert words in decision.findings[0].message
    off, _ = check(images[stage], strict(**{rule: "off"}))
    assert off.admitted and off.findings == (), off.findings


@pytest.mark.parametrize("stage", ["bare", "prefix", "usersite"])
def test_evasion_is_refused_through_the_archive_api_too(images, strict, stage):
    rule, words, _, _ = EVASIONS[stage]
    decision, _ = check(images[stage], strict(read_layers=False))
    assert found(decision) == {rule: "deny"} and words in decision.findings[0].message, decision.findings


def test_the_real_conda_image_stays_admitted_under_the_strict_policy(images, strict):
    decision, _ = check(REAL, strict())
    assert decision.admitted and decision.findings == (), decision.findings
