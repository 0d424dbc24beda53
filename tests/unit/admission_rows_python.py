"""Rows of tests/unit/test_admission_rules.py for the Python import rules (rules/python.py)."""

import pytest
from attestrig import bundle, new_key, sidecar

from hardened_spawner.admission import conda_attestations, engine
from hardened_spawner.admission.channels import Attested, Listed, RepodataError
from hardened_spawner.admission.facts import Entry
from hardened_spawner.admission.policy import Policy
from admission_images import COMPLIANT_RECORDS, MD5, SP, record

SITE = ("jupyterhub-6.1.1.dist-info",)
SETUPTOOLS = record("setuptools", "69.0", files=["lib/python3.11/site-packages/distutils-precedence.pth",
                                                 "lib/python3.11/site-packages/setuptools/__init__.py"])
PIP_RECORD = {f"{SP}/evil-1.0.dist-info/RECORD": b"evil/__init__.py,sha256=x,1\nevil.pth,,\n"
                                                 b"evil-1.0.dist-info/RECORD,,\n../../../bin/evil,,\n"}
USER_SITE = "/home/jovyan/.local/lib/python3.11/site-packages"
VERIFY = Policy(verify_channels=(("conda-forge", "https://mirror.example.org/conda-forge"),))
FORGE = "conda.anaconda.org/conda-forge"
LISTED = {(FORGE, "linux-64", "python-3.11.2-hab00c5b_0_cpython.conda"): Listed("ab" * 32, MD5, 1),
          (FORGE, "noarch", "jupyterhub-6.1.1-pyhd8ed1ab_0.conda"): Listed("ab" * 32, MD5, 1)}


def repodata(listed):
    return {"policy": VERIFY, "context": engine.Context(repodata=listed)}


KEY, OTHER = new_key(), new_key()
KEYS = tuple(conda_attestations.load_keys(__import__("attestrig").public_pem(KEY)))
ATTEST = Policy(verify_channels=VERIFY.verify_channels, attestation_keys=(("conda-forge", "/etc/keys.pem"),))
JUPYTERHUB = (FORGE, "noarch", "jupyterhub-6.1.1-pyhd8ed1ab_0.conda")
PYTHON = (FORGE, "linux-64", "python-3.11.2-hab00c5b_0_cpython.conda")


def served(*bundles, advertised=None):
    body, digest = sidecar(*bundles)
    return Attested(digest if advertised is None else advertised, body, KEYS)


def attested(jupyterhub, python=None):
    """The rule's inputs: jupyterhub served as given, python signed by the trusted key for conda-forge."""
    python = python or served(bundle(KEY, PYTHON[2], "ab" * 32, "https://conda.anaconda.org/conda-forge"))
    return {"policy": ATTEST, "context": engine.Context(attestations={JUPYTERHUB: jupyterhub, PYTHON: python})}


SIGNED = served(bundle(KEY, JUPYTERHUB[2], "ab" * 32, "https://conda.anaconda.org/conda-forge"))


def fires(rule, **kwargs):
    return pytest.param(rule, kwargs, True, id=f"{rule}-fires")


def passes(rule, **kwargs):
    return pytest.param(rule, kwargs, False, id=f"{rule}-passes")


TORNADO = record("tornado", "6.6.1", "py311_0", "linux-64")
TORNADO["paths_data"]["paths"] = [
    {"_path": "lib/python3.11/site-packages/tornado/__init__.py", "path_type": "hardlink", "sha256": "a" * 64},
    {"_path": "lib/python3.11/site-packages/tornado/speedups.so", "path_type": "hardlink", "sha256": "b" * 64},
    {"_path": "lib/python3.11/site-packages/tornado/paths.py", "path_type": "hardlink", "sha256": "c" * 64,
     "prefix_placeholder": "/opt/conda-build-placeholder", "file_mode": "text"}]
INIT = f"{SP}/tornado/__init__.py"
OWNED_TORNADO = record("tornado", "6.6.1", "py311_0", "linux-64", files=[
    "lib/python3.11/site-packages/tornado/__init__.py", "lib/python3.11/site-packages/tornado/web.py",
    "lib/python3.11/site-packages/tornado/__pycache__/web.cpython-311.pyc"])
FILE = Entry(0o644, "file", 1)


def nested(*added):
    """The owned tornado package with ``added`` (paths inside it) beside its own files."""
    own = ("__init__.py", "web.py", "__pycache__/web.cpython-311.pyc", "py.typed")
    return {"records": COMPLIANT_RECORDS + [OWNED_TORNADO], "site": SITE + ("tornado",),
            "entries": {f"{SP}/tornado/{p}": FILE for p in own + added}}


def hashed(actual, **facts):
    return {"policy": Policy(verify_files=True), "records": COMPLIANT_RECORDS + [TORNADO], "hashes": actual, **facts}


PYTHON_ROWS = [
    fires("conda.attestation-missing", **attested(Attested("", None, KEYS))),
    fires("conda.attestation-missing", **attested(Attested("ab" * 32, "its sidecar cannot be fetched", KEYS))),
    fires("conda.attestation-missing", policy=ATTEST, context=engine.Context(attestations=RepodataError("down"))),
    passes("conda.attestation-missing", **attested(SIGNED)),
    fires("conda.attestation-untrusted", **attested(served(bundle(OTHER, JUPYTERHUB[2], "ab" * 32,
                                                                  "https://conda.anaconda.org/conda-forge")))),
    fires("conda.attestation-untrusted", **attested(served(bundle(KEY, JUPYTERHUB[2], "cd" * 32,
                                                                  "https://conda.anaconda.org/conda-forge")))),
    fires("conda.attestation-untrusted", **attested(served(bundle(KEY, JUPYTERHUB[2], "ab" * 32,
                                                                  "https://conda.anaconda.org/conda-forge"),
                                                           advertised="cd" * 32))),
    passes("conda.attestation-untrusted", **attested(served(
        bundle(OTHER, JUPYTERHUB[2], "ab" * 32, "https://conda.anaconda.org/conda-forge"),
        bundle(KEY, JUPYTERHUB[2], "ab" * 32, "conda-forge")))),
    fires("conda.attestation-wrong-channel", **attested(served(bundle(KEY, JUPYTERHUB[2], "ab" * 32,
                                                                      "https://prefix.dev/conda-forge")))),
    passes("conda.attestation-wrong-channel", **attested(SIGNED)),
    fires("conda.file-modified", **hashed({INIT: "d" * 64})),
    fires("conda.file-modified", **hashed({INIT: None})),
    passes("conda.file-modified", **hashed({INIT: "a" * 64, f"{SP}/tornado/paths.py": "e" * 64})),
    fires("conda.not-from-channel", **repodata({**LISTED, (FORGE, "noarch", "jupyterhub-6.1.1-pyhd8ed1ab_0.conda"):
                                                Listed("cd" * 32, MD5, 1)})),
    fires("conda.not-from-channel", **repodata({k: v for k, v in LISTED.items() if k[1] == "noarch"})),
    fires("conda.not-from-channel", **repodata(RepodataError("cannot read the repodata of conda-forge"))),
    passes("conda.not-from-channel", **repodata(LISTED)),
    fires("python.unowned-module", site=SITE + ("Crypto",)),
    fires("python.unowned-module", site=SITE + ("shadow.py", "_speedups.cpython-311-x86_64-linux-gnu.so")),
    passes("python.unowned-module", site=SITE + ("__pycache__", "setuptools", "evil-1.0.dist-info", "evil"),
           records=COMPLIANT_RECORDS + [SETUPTOOLS], files=PIP_RECORD),
    fires("python.unowned-module", **nested("web/__init__.py")),
    fires("python.unowned-module", **nested("web.abi3.so")),
    fires("python.unowned-module", **nested("web.cpython-311-x86_64-linux-gnu.so")),
    fires("python.unowned-module", **nested("__pycache__/web.cpython-311.opt-1.pyc")),
    fires("python.unowned-module", **nested("evil.pyc")),
    passes("python.unowned-module", **nested("web/README.txt", "LICENSE")),
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
