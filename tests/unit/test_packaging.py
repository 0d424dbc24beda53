"""What users install: every non-Python file under hardened_spawner/ is in the built wheel.

An editable checkout reads templates and schemas from the source tree, so a file
missing from ``package_data`` goes unnoticed until someone installs the wheel
(issue 22: the refusal pages' templates were missing). The wheel is built from a
copy of the sources (a stale ``build/`` in the checkout cannot hide a missing file).
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "hardened_spawner"
SKIP = {"__pycache__"}


def data_files(root):
    """Paths (relative to the repository) of the non-Python files under ``root``."""
    return {p.relative_to(root.parent).as_posix() for p in root.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and not SKIP & set(p.parts)}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(PACKAGE, src / "hardened_spawner", ignore=shutil.ignore_patterns(*SKIP))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = out.glob("hardened_spawner-*.whl")
    return path


def test_every_data_file_is_in_the_wheel(wheel):
    expected = data_files(PACKAGE)
    assert expected, "found no templates or schemas: the test looks in the wrong place"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (add them to setup.cfg [options.package_data]): {missing}"


def test_the_wheel_carries_the_entry_points(wheel):
    with zipfile.ZipFile(wheel) as z:
        entry_points = next(z.read(n).decode() for n in z.namelist() if n.endswith("entry_points.txt"))
    for name in ("hardened-docker = ", "hardened-swarm = ", "hardened-oauth = ", "hardened-spawner = "):
        assert name in entry_points, entry_points
