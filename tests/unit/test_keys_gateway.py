"""Gateway pieces that need no network: its host key, which spawner class holds the settings."""

import os
import stat

import pytest
from traitlets.config import Config

from hardened_spawner.spawner import HardenedDockerSpawner
from hardened_spawner.spawner import configured_spawner_class as spawner_class
from hardened_spawner.ssh.gateway import load_host_key
from hardened_spawner.ssh.service import gateway_role, gateway_service


def test_host_key_is_created_once_private_and_then_reused(tmp_path):
    path = str(tmp_path / "host_key")
    first = load_host_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert first.algorithm == b"ssh-ed25519"
    assert load_host_key(path).get_fingerprint() == first.get_fingerprint()
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match="readable by others"):
        load_host_key(path)


def test_settings_come_from_the_hubs_spawner_class():
    c = Config()
    assert spawner_class(c) is HardenedDockerSpawner
    c.JupyterHub.spawner_class = "hardened-docker"
    assert spawner_class(c) is HardenedDockerSpawner
    c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"  # no SSH settings there
    assert spawner_class(c) is HardenedDockerSpawner


def test_service_and_role(monkeypatch):
    monkeypatch.setenv("HS_SSH_GATEWAY_PORT", "9022")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "not-passed")
    monkeypatch.setenv("UNRELATED_SECRET", "not-passed")
    service = gateway_service("/etc/jupyterhub/jupyterhub_config.py")
    assert service["command"][1:] == ["-m", "hardened_spawner.ssh.gateway", "--config",
                                      "/etc/jupyterhub/jupyterhub_config.py"]
    assert service["environment"]["HS_SSH_GATEWAY_PORT"] == "9022"
    assert "JUPYTERHUB_API_TOKEN" not in service["environment"]
    assert "UNRELATED_SECRET" not in service["environment"]
    assert gateway_role()["scopes"] == ["read:servers", "admin:server_state"]
    assert "start:servers" in gateway_role(start_servers=True)["scopes"]
