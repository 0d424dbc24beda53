"""Rows of tests/unit/test_admission_rules.py for the Python import rules (rules/python.py)."""

import pytest

from hardened_spawner.admission.facts import Entry
from admission_images import COMPLIANT_RECORDS, SP, record

SITE = ("jupyterhub-6.1.1.dist-info",)
SETUPTOOLS = record("setuptools", "69.0", files=["lib/python3.11/site-packages/distutils-precedence.pth",
                                                 "lib/python3.11/site-packages/setuptools/__init__.py"])
PIP_RECORD = {f"{SP}/evil-1.0.dist-info/RECORD": b"evil/__init__.py,sha256=x,1\nevil.pth,,\n"
                                                 b"evil-1.0.dist-info/RECORD,,\n../../../bin/evil,,\n"}
USER_SITE = "/home/jovyan/.local/lib/python3.11/site-packages"


def fires(rule, **kwargs):
    return pytest.param(rule, kwargs, True, id=f"{rule}-fires")


def passes(rule, **kwargs):
    return pytest.param(rule, kwargs, False, id=f"{rule}-passes")


PYTHON_ROWS = [
    fires("python.unowned-module", site=SITE + ("Crypto",)),
    fires("python.unowned-module", site=SITE + ("shadow.py", "_speedups.cpython-311-x86_64-linux-gnu.so")),
    passes("python.unowned-module", site=SITE + ("__pycache__", "setuptools", "evil-1.0.dist-info", "evil"),
           records=COMPLIANT_RECORDS + [SETUPTOOLS], files=PIP_RECORD),
    fires("python.unowned-pth", site=SITE + ("evil.pth",)),
    passes("python.unowned-pth", site=SITE + ("distutils-precedence.pth", "evil-1.0.dist-info", "evil.pth"),
           records=COMPLIANT_RECORDS + [SETUPTOOLS], files=PIP_RECORD),
    fires("python.import-env", Env=["PYTHONPATH=/opt/shadow"]),
    fires("python.import-env", Env=["LD_LIBRARY_PATH=/usr/local/nvidia/lib:/opt/evil"]),
    fires("python.import-env", files={"/etc/ld.so.preload": b"# mapped into every process\n/opt/x.so\n"}),
    passes("python.import-env", Env=["LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64/", "PYTHONPATH=",
                                     "PYTHONDONTWRITEBYTECODE=1"], files={"/etc/ld.so.preload": b"# none\n"}),
    fires("python.user-site", entries={f"{USER_SITE}/evil.py": Entry(0o644, "file", 1)}),
    passes("python.user-site", entries={USER_SITE: Entry(0o755, "dir", 0),
                                        "/home/jovyan/.local/lib/other/site-packages/x.py": Entry(0o644, "file", 1)}),
]
