"""Gateway pieces that need no network: its host key, which spawner class holds the settings."""

import os
import stat
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from hardened_spawner.spawner import HardenedDockerSpawner
from hardened_spawner.spawner import configured_spawner_class as spawner_class
from hardened_spawner.keys.host_certs import load_or_create_key as load_host_key
from hardened_spawner.ssh.service import (
    gateway_role, gateway_service, keys_role, keys_scopes, keys_service, ssh_template_vars,
)


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
    service = gateway_service("/etc/jupyterhub/jupyterhub_config.py", "http://127.0.0.1:8023")
    assert service["command"][1:] == ["-m", "hardened_spawner.ssh.gateway", "--config",
                                      "/etc/jupyterhub/jupyterhub_config.py", "--keys-url=http://127.0.0.1:8023"]
    assert service["environment"]["HS_SSH_GATEWAY_PORT"] == "9022"
    assert "JUPYTERHUB_API_TOKEN" not in service["environment"]
    assert "UNRELATED_SECRET" not in service["environment"]
    assert gateway_role()["scopes"] == ["read:servers", "admin:server_state", "custom:ssh-keys:read",
                                        "access:services!service=ssh-keys", "custom:hardened-spawner:read-access"]
    assert "start:servers" in gateway_role(start_servers=True)["scopes"]


def test_host_key_public_half_is_kept_for_the_home_page(tmp_path):
    path = str(tmp_path / "host_key")
    key = load_host_key(path)
    assert stat.S_IMODE(os.stat(path + ".pub").st_mode) == 0o644
    os.unlink(path + ".pub")
    assert load_host_key(path).get_fingerprint() == key.get_fingerprint()  # re-made from the private key
    home = ssh_template_vars("hub.example.org", 8022, host_key_file=path)["hs_ssh"](SimpleNamespace(name="alice"))
    assert home.host_key == key.get_fingerprint("sha256")
    assert home.known_hosts.startswith("[hub.example.org]:8022 ssh-ed25519 AAAA")
    assert home.command == "ssh -J alice@hub.example.org:8022 jovyan@alice"
    assert ssh_template_vars("", 8022)["hs_ssh"](SimpleNamespace(name="alice")) is None


def test_keys_service_role_and_scopes(monkeypatch):
    monkeypatch.setenv("VAULT_TOKEN", "for-the-keys-service-only")
    keys = keys_service("/etc/jupyterhub/jupyterhub_config.py", "http://127.0.0.1:8023")
    assert keys["url"] == "http://127.0.0.1:8023" and keys["oauth_no_confirm"] is True
    assert keys["oauth_client_allowed_scopes"] == ["custom:ssh-keys:manage", "admin:users"]
    assert keys["environment"]["VAULT_TOKEN"] == "for-the-keys-service-only"
    gateway = gateway_service("/etc/jupyterhub/jupyterhub_config.py", "http://127.0.0.1:8023")
    assert "VAULT_TOKEN" not in gateway["environment"]  # the gateway holds no key-store credentials
    assert gateway["command"][-1] == "--keys-url=http://127.0.0.1:8023"
    # the access scope: a user certificate is issued only after the hub says the user may still log in
    assert keys_role()["scopes"] == ["read:servers", "admin:server_state", "custom:hardened-spawner:read-access"]
    assert "admin:auth_state" in keys_role(auth_state=True)["scopes"]
    assert "admin:auth_state" not in gateway_role()["scopes"]
    c = Config()
    keys_scopes(c)
    assert set(c.JupyterHub.custom_scopes.get_value({})) == {"custom:ssh-keys:manage", "custom:ssh-keys:read",
                                                             "custom:hardened-spawner:read-access"}
    assert c.JupyterHub.extra_user_scopes.get_value(set()) == {
        "custom:ssh-keys:manage!user", "access:services!service=ssh-keys"}
