"""Ways around the conda policy, as an image owner would try them (issue 23), each a real image.

Images from rig/conda-evasion-images.sh (tests/images/conda-evasion.Dockerfile), built on the real
conda image of rig/conda-images.sh. The policy is the strict one an admin would write: approved
channel through the rig's mirror, the exported lock file, ``pycrypto`` denied and
``conda.pip-pollution`` enforced. Each image is refused with its rule, and admitted when the policy
turns that rule off (so that rule is what refuses it); the real image stays admitted.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hubrig import REPO

from hardened_spawner.tools import sbom as sbom_tool
from hardened_spawner.tools.check_image import check

pytestmark = [pytest.mark.docker]

STATE = Path(os.environ.get("HS_RIG_STATE", "/var/lib/hardened-spawner-rig"))
REAL = "hardened-spawner/conda-real:test"
SP = "/opt/conda/lib/python3.11/site-packages"
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
    # inside the owned tornado package: what `import tornado.web` runs instead of the channel's tornado/web.py
    **{stage: ("python.unowned-module", f"{SP}/tornado/{added} (`import tornado.web` runs it, not the "
                                        "tornado.web that tornado 6.6.1 (py311_hs_0) installs)",
               ("/opt/conda/bin/python", "try:\n import tornado.web\nexcept ImportError as e:\n print(e)"), shows)
       for stage, added, shows in (("nestedpkg", "web/__init__.py", "nested package ran"),
                                   ("nestedext", "web.abi3.so", "nested extension ran"),
                                   ("nestedpyc", "__pycache__/web.cpython-311.pyc", "crafted pyc ran"))},
}
NESTED = ("nestedpkg", "nestedext", "nestedpyc")


@pytest.fixture(scope="module")
def images(dclient, image):
    for script in ("rig/conda-images.sh", "rig/conda-evasion-images.sh"):
        subprocess.run(["bash", str(REPO / script)], check=True, capture_output=True)
    return {stage: f"hardened-spawner/conda-evade-{stage}:test" for stage in EVASIONS}


@pytest.fixture(scope="module")
def strict(dclient, images):
    labels = dclient.inspect_image(REAL)["Config"]["Labels"]
    mirror, inputs = labels["hardened-spawner.conda-mirror"], labels["hardened-spawner.test-inputs"]

    def policy(read_layers=True, lock=True, verify=None, files=False, **modes):
        return {"HardenedDockerSpawner": {
            "conda_allowed_channels": ["conda-forge"], "conda_channel_mirrors": {f"{mirror}/conda-forge": "conda-forge"},
            "conda_denied_packages": ["pycrypto"], "admission_read_layers": read_layers,
            "conda_lock_file": str(STATE / "conda-exports" / inputs / "base" / "explicit.txt") if lock else "",
            "conda_verify_channels": {"conda-forge": verify} if verify else {}, "conda_verify_files": files,
            "admission_rule_modes": {"conda.pip-pollution": "enforce", **modes}}}
    return policy


@pytest.fixture(scope="module")
def channel(dclient, images):
    """The rig's private channel (rig/conda_channel.py built it, py-rattler indexed it) served over HTTP on
    loopback again, as the admin's mirror: the one whose repodata lists the packages of the real image."""
    inputs = dclient.inspect_image(REAL)["Config"]["Labels"]["hardened-spawner.test-inputs"]
    md5 = re.search(r"#([0-9a-f]{32})", (STATE / "conda-exports" / inputs / "base" / "explicit.txt").read_text())[1]
    root = next(d for d in STATE.glob("conda-*/channels") if md5 in (d / "conda-forge/noarch/repodata.json").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory",
                               str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/conda-forge"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/noarch/repodata.json", timeout=2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        server.kill()
        server.wait()


def found(decision):
    return {f.rule: f.action for f in decision.findings}


def test_each_evasion_really_imports_what_no_record_accounts_for(dclient, images):
    for stage, (_, _, run, shows) in EVASIONS.items():
        if run is None:
            continue
        out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", run[0], images[stage],
                              "-c", run[1]], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and shows in out.stdout + out.stderr, (stage, out)


def test_a_pycache_prefix_keeps_python_from_reading_the_images_crafted_pyc(images):
    """The setting docs/admission-conda.md gives admins: the bytecode cache moved out of the image's tree."""
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", "-e", "PYTHONPYCACHEPREFIX=/tmp/pycache",
                          "--entrypoint", "/opt/conda/bin/python", images["nestedpyc"], "-c",
                          "import tornado.web; print(tornado.web.RequestHandler.__name__)"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "RequestHandler", out
    assert "crafted pyc ran" not in out.stderr, out


@pytest.mark.parametrize("stage", list(EVASIONS))
def test_evasion_is_refused_by_its_rule_and_admitted_with_the_rule_off(images, strict, stage):
    rule, words, _, _ = EVASIONS[stage]
    decision, _ = check(images[stage], strict())
    assert not decision.admitted and found(decision) == {rule: "deny"}, decision.findings
    assert words in decision.findings[0].message
    off, _ = check(images[stage], strict(**{rule: "off"}))
    assert off.admitted and off.findings == (), off.findings


@pytest.mark.parametrize("stage", ["bare", "prefix", "usersite", *NESTED])
def test_evasion_is_refused_through_the_archive_api_too(images, strict, stage):
    rule, words, _, _ = EVASIONS[stage]
    decision, _ = check(images[stage], strict(read_layers=False))
    assert found(decision) == {rule: "deny"} and words in decision.findings[0].message, decision.findings


def test_the_real_conda_image_stays_admitted_under_the_strict_policy(images, strict):
    decision, _ = check(REAL, strict())
    assert decision.admitted and decision.findings == (), decision.findings


@pytest.mark.parametrize("read_layers", [True, False], ids=["layers", "archive"])
def test_files_added_inside_an_owned_package_are_refused_under_the_strictest_policy(images, strict, channel,
                                                                                      read_layers):
    """Channels verified (ownership from the packages' info/paths.json) and every recorded file hashed: the
    package's own files are unchanged, so only the recursive ownership check sees what was added beside them."""
    for stage in NESTED:
        rule, words, _, _ = EVASIONS[stage]
        decision, _ = check(images[stage], strict(verify=channel, files=True, read_layers=read_layers))
        assert found(decision) == {rule: "deny"} and words in decision.findings[0].message, (stage, decision.findings)
        off, _ = check(images[stage], strict(verify=channel, files=True, read_layers=read_layers, **{rule: "off"}))
        assert off.admitted and off.findings == (), (stage, off.findings)
    real, _ = check(REAL, strict(verify=channel, files=True, read_layers=read_layers))
    assert real.admitted and real.findings == (), real.findings
    envs, _ = check("hardened-spawner/conda-realenvs:test", strict(verify=channel, files=True, read_layers=read_layers))
    assert "python.unowned-module" not in found(envs), envs.findings  # its denied and foreign packages are others'


@pytest.mark.parametrize("stage, words", [
    ("forgedchannel", "hs-telemetry 0.1 (h_hs_0): conda.anaconda.org/conda-forge lists no noarch/hs-telemetry-0.1-h_hs_0.conda"),
    ("forgedhash", "six 1.17.0 (pyh_hs_0): sha256 ffffffffffffffff... is not the "),
])
def test_a_forged_record_passes_the_channel_rule_but_not_the_channels_repodata(dclient, strict, channel, stage, words):
    ref = f"hardened-spawner/conda-evade-{stage}:test"
    lock = stage == "forgedhash"  # the lock file pins md5, which the forged hash kept; the forged channel adds a package
    admitted, _ = check(ref, strict(lock=lock))  # the channel rule reads the claim, and the claim says conda-forge
    assert admitted.admitted and admitted.findings == (), admitted.findings
    decision, _ = check(ref, strict(lock=lock, verify=channel))
    assert found(decision) == {"conda.not-from-channel": "deny"} and words in decision.findings[0].message, decision.findings


def test_records_of_the_real_image_are_in_the_channel_and_an_unreadable_mirror_refuses(strict, channel):
    decision, _ = check(REAL, strict(verify=channel))
    assert decision.admitted and decision.findings == (), decision.findings
    down, _ = check(REAL, strict(verify="http://127.0.0.1:1/conda-forge"))
    assert found(down) == {"conda.not-from-channel": "deny"}, down.findings
    assert "cannot read the repodata of conda.anaconda.org/conda-forge from http://127.0.0.1:1/conda-forge" in down.findings[0].message
    audited, _ = check(REAL, strict(verify="http://127.0.0.1:1/conda-forge", **{"conda.not-from-channel": "audit"}))
    assert audited.admitted and found(audited) == {"conda.not-from-channel": "warn"}


@pytest.mark.parametrize("read_layers", [True, False], ids=["layers", "archive"])
def test_a_package_patched_after_install_is_refused_by_its_files_hashes(strict, read_layers):
    ref = "hardened-spawner/conda-evade-modified:test"
    admitted, _ = check(ref, strict(read_layers=read_layers))  # record, lock file and channel all still say the original
    assert admitted.admitted and admitted.findings == (), admitted.findings
    decision, _ = check(ref, strict(files=True, read_layers=read_layers))
    assert found(decision) == {"conda.file-modified": "deny"}, decision.findings
    assert ("/opt/conda/lib/python3.11/site-packages/tornado/__init__.py of tornado 6.6.1 (py311_hs_0) was changed "
            "after install") in decision.findings[0].message
    assert check(REAL, strict(files=True, read_layers=read_layers))[0].findings == ()


# stage -> (what the patched file does when run, the sentence its finding holds)
PATCHED = {
    "modifiedext": (("/opt/conda/bin/python", "-c", "import tornado.speedups as s; print(s.__file__)"),
                    "/opt/conda/lib/python3.11/site-packages/tornado/speedups.abi3.so",
                    "/opt/conda/lib/python3.11/site-packages/tornado/speedups.abi3.so of tornado 6.6.1 (py311_hs_0) "
                    "was changed after install"),
    "modifiedscript": (("/opt/conda/bin/jupyterhub-singleuser", "--version"), "patched",
                       "/opt/conda/bin/jupyterhub-singleuser of jupyterhub 6.1.1 (pyh_hs_0) was changed after install"),
}


@pytest.mark.parametrize("read_layers", [True, False], ids=["layers", "archive"])
@pytest.mark.parametrize("stage", list(PATCHED))
def test_a_patched_extension_or_script_is_refused_by_its_hash(dclient, strict, channel, stage, read_layers):
    ref = f"hardened-spawner/conda-evade-{stage}:test"
    run, shows, words = PATCHED[stage]
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", run[0], ref, *run[1:]],
                         capture_output=True, text=True, timeout=60)
    assert shows in out.stdout + out.stderr, out
    for verify in (None, channel):  # the record's paths_data, then the package's own info/paths.json
        decision, _ = check(ref, strict(files=True, verify=verify, read_layers=read_layers))
        assert found(decision) == {"conda.file-modified": "deny"} and words in decision.findings[0].message, \
            decision.findings
    off, _ = check(ref, strict(files=True, verify=channel, read_layers=read_layers, **{"conda.file-modified": "off"}))
    assert off.admitted and off.findings == (), off.findings


@pytest.mark.parametrize("read_layers", [True, False], ids=["layers", "archive"])
def test_a_package_file_replaced_by_a_link_is_refused(dclient, strict, read_layers):
    ref = "hardened-spawner/conda-evade-relinked:test"
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "/opt/conda/bin/python", ref,
                          "-c", "import tornado; print(tornado.version)"], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "relinked", out
    decision, _ = check(ref, strict(files=True, read_layers=read_layers))
    assert found(decision) == {"conda.file-modified": "deny"}, decision.findings
    assert ("/opt/conda/lib/python3.11/site-packages/tornado/__init__.py of tornado 6.6.1 (py311_hs_0) is missing or "
            "not a regular file") in decision.findings[0].message


def test_the_sbom_says_which_records_the_channel_lists(strict, channel):
    doc = json.loads(sbom_tool.document("hardened-spawner/conda-evade-forgedhash:test", strict(verify=channel)))
    checked = {c["name"]: {p["name"]: p["value"] for p in c.get("properties", ())}.get("hardened-spawner:channel-check")
               for c in doc["components"] if c["purl"].startswith("pkg:conda/")}
    assert checked["six"] == "not listed" and checked["python"] == checked["tornado"] == "listed", checked
    assert set(checked.values()) == {"listed", "not listed"}
    plain = json.loads(sbom_tool.document(REAL, strict()))
    assert {p["value"] for c in plain["components"] for p in c.get("properties", ())
            if p["name"] == "hardened-spawner:channel-check"} == {"not checked"}


def serve(root):
    """``(server, URL)``: ``root`` over HTTP on loopback, as a channel host would serve it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory",
                               str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
            break
        except OSError:
            time.sleep(0.1)
    return server, f"http://127.0.0.1:{port}"


# the rig's channel as a channel serving CEP 50 sidecars: six unsigned, tornado signed by a key nobody trusts,
# packaging published (by the trusted key) to another channel, every other package signed for this one
ODD = {"six": None, "tornado": "other key", "packaging": "https://prefix.dev/conda-forge"}


@pytest.fixture(scope="module")
def attested_channel(channel, tmp_path_factory):
    import attestrig
    source = next(p for p in STATE.glob("conda-*/channels/conda-forge") if (p / "noarch/repodata.json").exists()
                  and _serves(channel, p))
    trusted, other = attestrig.new_key(), attestrig.new_key()
    dest = tmp_path_factory.mktemp("attested")
    server, url = serve(dest)
    target = f"{url}/conda-forge"

    def sign(subdir, file_name, sha256):
        odd = ODD.get(file_name.rsplit("-", 2)[0], "")
        if odd is None:
            return []
        key = other if odd == "other key" else trusted
        return [attestrig.bundle(key, file_name, sha256, odd if odd.startswith("https://") else target)]

    attestrig.attested_channel(source, dest / "conda-forge", sign)
    keys = dest / "publishers.pem"
    keys.write_bytes(attestrig.public_pem(trusted))
    try:
        yield target, str(keys)
    finally:
        server.kill()
        server.wait()


def _serves(url, directory):
    """True when ``directory`` is the channel ``url`` serves (same noarch repodata)."""
    with urllib.request.urlopen(f"{url}/noarch/repodata.json", timeout=10) as r:
        return r.read() == (directory / "noarch/repodata.json").read_bytes()


def test_a_name_added_to_a_records_files_owns_nothing_when_the_channel_is_verified(dclient, strict, channel):
    ref = "hardened-spawner/conda-evade-claimedfiles:test"  # the bare Crypto/, listed in tornado's record `files`
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "/opt/conda/bin/python", ref,
                          "-c", "import Crypto; print(Crypto.__file__)"], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "/opt/conda/lib/python3.11/site-packages/Crypto/__init__.py", out
    claimed, _ = check(ref, strict())  # without verified channels, ownership rests on the record's claim
    assert claimed.admitted and claimed.findings == (), claimed.findings
    for read_layers in (True, False):  # tornado's own info/paths.json on the channel installs no Crypto/
        decision, _ = check(ref, strict(verify=channel, read_layers=read_layers))
        assert found(decision) == {"python.unowned-module": "deny"}, decision.findings
        assert ("site-packages holds /opt/conda/lib/python3.11/site-packages/Crypto, which no conda record or pip "
                "RECORD owns.") in decision.findings[0].message, decision.findings
    off, _ = check(ref, strict(verify=channel, **{"python.unowned-module": "off"}))
    assert off.admitted and off.findings == (), off.findings
    bare, _ = check("hardened-spawner/conda-evade-bare:test", strict())  # unverified, the finding says what ownership rests on
    assert "conda_verify_channels takes it from the packages" in bare.findings[0].message, bare.findings


def test_a_package_file_list_that_cannot_be_read_refuses_through_the_ownership_rules(strict, channel, tmp_path):
    """The channel's repodata lists tornado, but its package cannot be read: what the record owns is not taken
    from the record's claim instead (fail closed)."""
    source = next(p for p in STATE.glob("conda-*/channels/conda-forge") if (p / "noarch/repodata.json").exists()
                  and _serves(channel, p))
    for subdir in (d for d in source.iterdir() if d.is_dir()):
        (tmp_path / "conda-forge" / subdir.name).mkdir(parents=True)
        for item in subdir.iterdir():
            if not item.name.startswith("tornado-"):
                (tmp_path / "conda-forge" / subdir.name / item.name).symlink_to(item)
    server, url = serve(tmp_path)
    try:
        decision, _ = check(REAL, strict(verify=f"{url}/conda-forge"))
    finally:
        server.kill()
        server.wait()
    assert found(decision) == {"python.unowned-module": "deny", "python.unowned-pth": "deny"}, decision.findings
    assert all(f"cannot read info/paths.json of {url}/conda-forge/linux-64/tornado-6.6.1-py311_hs_0.conda" in f.message
               for f in decision.findings), decision.findings


def test_publish_attestations_on_the_rigs_channel_over_http(strict, attested_channel):
    url, keys = attested_channel
    policy = strict(verify=url)
    policy["HardenedDockerSpawner"]["conda_channel_mirrors"][url] = "conda-forge"
    policy["HardenedDockerSpawner"]["conda_attestation_keys"] = {"conda-forge": keys}
    decision, _ = check(REAL, policy)
    by_rule = {f.rule: f for f in decision.findings}
    assert not decision.admitted and set(by_rule) == {"conda.attestation-missing", "conda.attestation-untrusted",
                                                      "conda.attestation-wrong-channel"}, decision.findings
    assert all(f.action == "deny" for f in decision.findings)
    assert re.search(r"\(missing\): six 1\.17\.0 \(pyh_hs_0\): the channel advertises no attestation\.$",
                     by_rule["conda.attestation-missing"].message), by_rule["conda.attestation-missing"].message
    assert ("(untrusted): tornado 6.6.1 (py311_hs_0): no attestation of this file and hash is signed by a trusted key."
            in by_rule["conda.attestation-untrusted"].message), by_rule["conda.attestation-untrusted"].message
    assert re.search(r"\(wrong-channel\): packaging 26.4 \(pyh_hs_0\): its trusted attestation publishes it to "
                     r"https://prefix\.dev/conda-forge\.$", by_rule["conda.attestation-wrong-channel"].message)
    for rule in by_rule:  # each case is refused by its own rule
        modes = {**policy["HardenedDockerSpawner"]["admission_rule_modes"], **{r: "off" for r in by_rule if r != rule}}
        alone, _ = check(REAL, {"HardenedDockerSpawner": {**policy["HardenedDockerSpawner"],
                                                          "admission_rule_modes": modes}})
        assert not alone.admitted and found(alone) == {rule: "deny"}, alone.findings
    modes = {**policy["HardenedDockerSpawner"]["admission_rule_modes"], **{r: "off" for r in by_rule}}
    off, _ = check(REAL, {"HardenedDockerSpawner": {**policy["HardenedDockerSpawner"], "admission_rule_modes": modes}})
    assert off.admitted and off.findings == (), off.findings
    doc = json.loads(sbom_tool.document(REAL, policy))  # what admission proved is in the SBOM too
    status = {c["name"]: {p["name"]: p["value"] for p in c.get("properties", ())}.get("hardened-spawner:attestation")
              for c in doc["components"] if c["purl"].startswith("pkg:conda/")}
    assert (status["six"], status["tornado"], status["packaging"]) == ("missing", "untrusted", "wrong-channel")
    assert {v for k, v in status.items() if k not in ODD} == {"attested"}, status


def test_an_edited_paths_data_is_caught_by_the_packages_own_file_list(strict, channel):
    ref = "hardened-spawner/conda-evade-forgedpaths:test"
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "/opt/conda/bin/python", ref,
                          "-c", "import tornado; print(tornado.version)"], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "forged", out
    admitted, _ = check(ref, strict(files=True))  # the record's paths_data says the patched file's sha256
    assert admitted.admitted and admitted.findings == (), admitted.findings
    for read_layers in (True, False):
        decision, _ = check(ref, strict(files=True, verify=channel, read_layers=read_layers))
        assert found(decision) == {"conda.file-modified": "deny"}, decision.findings
        assert ("/opt/conda/lib/python3.11/site-packages/tornado/__init__.py of tornado 6.6.1 (py311_hs_0) was changed "
                "after install") in decision.findings[0].message
    real, _ = check(REAL, strict(files=True, verify=channel))  # every package's files, from the channel: unchanged
    assert real.admitted and real.findings == (), real.findings
    down, _ = check(REAL, strict(files=True, verify="http://127.0.0.1:1/conda-forge",
                                 **{"conda.not-from-channel": "off"}))
    assert found(down) == {"conda.file-modified": "deny"}, down.findings
    assert "cannot be compared with their packages: cannot read the repodata" in down.findings[0].message
