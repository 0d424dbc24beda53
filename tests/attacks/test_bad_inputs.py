"""Bad input from every side, each answered with a clear error, nothing created, nothing secret logged.

User options and image references go through a real hub's REST API (one hub
for the module); key-store paths through the real file key store; scanner
reports through check-image on a real image. The admin-settings side is
tests/attacks/test_bad_settings.py; bad SSH keys are in
tests/integration/test_ssh_keys_service.py and tests/e2e/test_browser_ssh_keys.py.
"""

import json
import os

import pytest
from conftest import containers_of
from hubrig import Hub, remove_user_artifacts

from traitlets.config import Config

from hardened_spawner.errors import UnsafeConfig
from hardened_spawner.keys.stores import FileKeyStore, KeyStoreError
from hardened_spawner.tools import cli
from hardened_spawner.tools.config_check import enforce_config

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.attack]

SECRET = "hunter2-not-for-logs"
EXTRA = f"""
c.HardenedDockerSpawner.profiles = [
    {{"slug": "small", "display_name": "Small", "default": True}},
    {{"slug": "large", "display_name": "Large", "mem_limit": "4G", "groups": ["staff"]}},
]
c.HardenedDockerSpawner.allowed_images = {{"default": "hardened-spawner/singleuser:local"}}
"""
BAD_OPTIONS = [
    ({"profile": "nope"}, "Unknown profile 'nope'"),
    ({"profile": "large"}, "only for members of staff"),
    ({"profile": 42}, "'profile' must be a name"),
    ({"profile": ""}, "'profile' must be a name"),
    ({"profile": "x" * 300}, "'profile' must be a name"),
    ({"profile": ["small"]}, "'profile' must be a name"),
    ({"profile": {"$ne": None}}, "'profile' must be a name"),
    ({"mem_limit": "512G"}, "'mem_limit' cannot be set in the server options"),
    ({"cpu_limit": 64}, "'cpu_limit' cannot be set"),
    ({"gpus": 8}, "'gpus' cannot be set"),
    ({"pids_limit": -1}, "'pids_limit' cannot be set"),
    ({"shm_size": "1T", "password": SECRET}, "'shm_size' cannot be set"),
    ({"image": "docker.io/library/alpine:3"}, "is not allowed here"),
    ({"image": "../../etc/passwd"}, "is not allowed here"),
    ({"image": "hardened-spawner/singleuser:local", "token": SECRET}, "is not allowed here"),
    ({"image": "default\x00evil"}, "is not allowed here"),
]
BAD_REFERENCES = [
    "UPPER/case:1", "a//b:1", "x@sha256:short", "Registry/x:1", "x:tag with space",
    "-leading/dash:1", "x:" + "t" * 200, "name@@sha256:" + "a" * 64,
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, image):
    hub = Hub(tmp_path_factory.mktemp("bad-inputs"), EXTRA).start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, hub.users)


def assert_clean(hub, dclient, user):
    assert containers_of(dclient, user) == []
    assert SECRET not in hub.log() and SECRET not in json.dumps(hub.audit())


@pytest.mark.parametrize("options, words", BAD_OPTIONS, ids=[w[:30] for _, w in BAD_OPTIONS])
def test_bad_user_options_are_refused_clearly(hub, dclient, options, words):
    user = f"bad-opt-{BAD_OPTIONS.index((options, words))}"
    r = hub.spawn(user, options)
    assert 400 <= r.status_code < 500, r.text
    assert words in r.json()["message"], r.json()
    assert_clean(hub, dclient, user)


@pytest.mark.parametrize("ref", BAD_REFERENCES)
def test_bad_image_references_refuse_the_hub_start(ref):
    c = Config()
    c.HardenedDockerSpawner.image = ref
    with pytest.raises(UnsafeConfig, match="HardenedDockerSpawner.image"):
        enforce_config(c)
    c = Config()
    c.HardenedDockerSpawner.allowed_images = {"x": ref}
    with pytest.raises(UnsafeConfig, match=r"HardenedDockerSpawner.allowed_images\['x'\]"):
        enforce_config(c)


@pytest.mark.parametrize("name", ["..", ".", "a/../../etc", "alice/..", "\x00root", "", "a\\b"])
def test_key_store_paths_cannot_escape_the_root(tmp_path, name):
    root = tmp_path / "keys"
    root.mkdir()
    (tmp_path / "authorized_keys").write_text("ssh-ed25519 AAAA planted\n")
    store = FileKeyStore(root=str(root))
    with pytest.raises(ValueError, match="cannot name a key location"):
        store.fetch(name)
    with pytest.raises(ValueError, match="cannot name a key location"):
        store.update(name, lambda old: old + "x")
    assert os.listdir(root) == []


def test_a_symlinked_user_directory_is_refused(tmp_path):
    root = tmp_path / "keys"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "authorized_keys").write_text("ssh-ed25519 AAAA planted\n")
    os.symlink(elsewhere, root / "alice")
    with pytest.raises(KeyStoreError, match="symbolic link"):
        FileKeyStore(root=str(root)).fetch("alice")


@pytest.fixture
def reports(tmp_path, dclient, image):
    directory = tmp_path / "reports"
    directory.mkdir()
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"c.HardenedDockerSpawner.scan_report_dir = {str(directory)!r}\n")
    return directory, config, dclient.inspect_image(image)["Id"].split(":", 1)[1]


@pytest.mark.parametrize("content, words", [
    (b"{not json", "not JSON"),
    (b"[1, 2, 3]", "top level is not an object"),
    (b'{"hello": "world"}', "not a Trivy, Grype or CycloneDX report"),
    (json.dumps({"SchemaVersion": 2, "ArtifactName": "x", "Metadata": {"ImageID": "sha256:" + "0" * 64},
                 "Results": []}).encode(), "is for sha256:" + "0" * 12 + ", not this image"),
    (json.dumps({"SchemaVersion": 2, "ArtifactName": "x", "Results": []}).encode(),
     "does not say which image digest"),
    (b"\xff\xfe\x00garbage", "not JSON"),
])
def test_bad_scanner_reports_deny_with_the_reason(reports, capsys, image, content, words):
    directory, config, hexdigest = reports
    (directory / f"sha256-{hexdigest}.trivy.json").write_bytes(content)
    code = cli.main(["check-image", image, "--config", str(config), "--format", "json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and not result["admitted"]
    invalid = [f for f in result["findings"] if f["rule"] == "scan.report-invalid"]
    assert invalid and words in invalid[0]["message"], result["findings"]
