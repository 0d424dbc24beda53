"""What users install, end to end: the package as the wheel installs it, not the checkout (issue 22).

rig/test.sh builds the sdist, the wheel from it, installs the wheel (not
editable) into a fresh virtual environment and runs this module with that
environment's Python from a directory outside the checkout (HS_WHEEL_RUN=1;
tests/conftest.py skips this folder otherwise). One hub: a spawn, an SSH login
through the gateway, the keys page, a refusal on the spawn form (the package's
own template) and ``hardened-spawner check-image``.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sshrig import Client, keygen, module_hub, service_session, wait_for_sshd, write_keys

import hardened_spawner
from hubrig import IMAGE, REPO

pytestmark = [pytest.mark.docker, pytest.mark.hub]

USER, OTHER = "whl-alice", "whl-bob"
UNTRUSTED = "untrusted.example/wheel-test:latest"


def test_the_package_is_the_installed_wheel_not_the_checkout():
    where = Path(hardened_spawner.__file__).resolve()
    assert REPO not in where.parents, f"imported from the checkout: {where}"
    assert Path(sys.prefix).resolve() in where.parents, (where, sys.prefix)
    assert sys.prefix != sys.base_prefix, "not a virtual environment"
    direct_url = next(Path(sys.prefix).glob("lib/python*/site-packages/hardened_spawner-*.dist-info/direct_url.json"))
    assert not json.loads(direct_url.read_text()).get("dir_info", {}).get("editable"), "an editable install"


@pytest.fixture(scope="module")
def rig(tmp_path_factory, dclient, image):
    dclient.tag(image, *UNTRUSTED.rsplit(":", 1))
    work = tmp_path_factory.mktemp("wheel")
    key, public = keygen(work, "alice")
    extra = (f"c.HardenedDockerSpawner.allowed_images = {{'default': {IMAGE!r}, 'untrusted': {UNTRUSTED!r}}}\n"
             "c.HardenedDockerSpawner.admission_image_allowlist = ['hardened-spawner/*']\n"
             "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 10}\n")
    try:
        with module_hub(work / "hub", dclient, extra) as hub:
            write_keys(hub.state / "ssh-keys", USER, [public])
            hub.ensure_user(OTHER)
            yield {"hub": hub, "client": Client(hub, USER, key, work), "work": work}
    finally:
        dclient.remove_image(UNTRUSTED)


def test_the_hub_runs_the_installed_package(rig):
    code = "import hardened_spawner, sys; print(hardened_spawner.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=rig["hub"].state, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert Path(sys.prefix).resolve() in Path(out).resolve().parents, out


def test_spawn_and_ssh_login(rig):
    hub = rig["hub"]
    events = hub.spawn_and_wait(USER, {"image": "default"})
    assert events[-1].get("ready"), events[-1]
    assert hub.user_get(USER, "/api/status").status_code == 200
    r = wait_for_sshd(rig["client"], USER)
    assert r.returncode == 0, r.stderr
    r = rig["client"].ssh(USER, "id -un")
    assert (r.returncode, r.stdout.strip()) == (0, "jovyan"), r.stderr


def test_the_keys_page(rig):
    page = service_session(rig["hub"], OTHER).get(f"{rig['hub'].url}/services/ssh-keys/", timeout=60)
    assert page.status_code == 200
    # ssh/templates/ssh-keys.html, the package's own page
    assert 'id="hs-ssh-keys"' in page.text and 'id="hs-keys-add"' in page.text, page.text[-2000:]


def test_a_refusal_page_says_why(rig):
    hub = rig["hub"]
    session = service_session(hub, OTHER)
    form = session.get(f"{hub.url}/hub/spawn/{OTHER}", timeout=60)
    assert 'name="image"' in form.text or "untrusted" in form.text, form.text[-2000:]
    xsrf = re.search(r'xsrf_token: "([^"]+)"', form.text).group(1)
    # an image the form does not offer: refused before anything starts, on the form itself
    r = session.post(f"{hub.url}/hub/spawn/{OTHER}", data={"image": "not-offered", "_xsrf": xsrf}, timeout=120)
    # pages/templates/spawn.html (the package's own) puts the refusal's HTML above the form
    assert 'class="spawn-error-msg alert alert-danger"' in r.text, r.text[-3000:]
    assert "hs-refusal" in r.text and "hs-ref" in r.text and "not allowed here" in r.text, r.text[-3000:]


def test_check_image_from_the_installed_command(rig):
    command = Path(sys.prefix) / "bin" / "hardened-spawner"
    env = {**os.environ, "HS_HUB_STATE": str(rig["work"] / "cli-state"), "HS_DEMO_PASSWORD": "x"}
    config = REPO / "jupyterhub_config.py"
    ok = subprocess.run([str(command), "check-image", IMAGE, "--config", str(config), "--format", "json"],
                        capture_output=True, text=True, env=env, cwd=rig["work"], timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["admitted"] is True
    refused = subprocess.run([str(command), "check-image", UNTRUSTED, "--config", str(rig["hub"].config),
                              "--format", "json"], capture_output=True, text=True, env={**env, **rig["hub"].env},
                             cwd=rig["work"], timeout=300)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    rules = {f["rule"] for f in json.loads(refused.stdout)["findings"]}
    assert {"image.not-allowlisted", "image.tag-latest"} <= rules, rules
