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
entry. The running, the outcomes and the comparison are in suites.py.
"""

import importlib.metadata
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from suites import regressions, run_both, stale

pytestmark = [pytest.mark.docker, pytest.mark.hub]

HERE = Path(__file__).resolve().parent
STATE = Path(os.environ.get("HS_RIG_STATE", "/var/lib/hardened-spawner-rig"))
MODULES = ("tests/test_dockerspawner.py", "tests/test_deprecations.py")
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


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Both runs at once (they wait on servers more than they compute; separate hubs, ports,
    container prefixes and users on the one daemon), then their per-test outcomes."""
    root = sdist_tests()
    return run_both("dockerspawner", ["-p", "upstream_plugin", "-c", str(HERE / "pytest.ini"), "--rootdir", str(root),
                                      *MODULES], "HS_UPSTREAM_SPAWNER", root, tmp_path_factory)


def test_both_runs_collected_the_whole_published_suite(results):
    assert results["plain"].keys() == results["hardened"].keys()
    assert len(results["plain"]) >= 30, sorted(results["plain"])


def test_hardened_passes_what_plain_passes_except_known(results):
    assert regressions(KNOWN, results) == {}


def test_known_failures_are_still_failures(results):
    """Remove an entry from KNOWN once the hardened class passes that test."""
    assert stale(KNOWN, results) == []
