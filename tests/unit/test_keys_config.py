"""SSH settings on the spawner: store selection, and unsafe settings refused at hub start."""

from types import SimpleNamespace

from traitlets.config import Config

from hardened_spawner.config_check import problems_in
from hardened_spawner.keys.stores import FileKeyStore
from hardened_spawner.keys.vault import VaultKeyStore
from hardened_spawner.spawner import HardenedDockerSpawner


def spawner(config):
    return HardenedDockerSpawner(config=config, user=SimpleNamespace(name="ssh-alice"))


def test_defaults_are_safe_and_ssh_is_off_without_a_store():
    s = spawner(Config())
    assert s.ssh_config_problems() == []
    assert isinstance(s.ssh_key_store(), FileKeyStore) and not s.ssh_key_store().configured()
    assert (s.ssh_key_options, s.ssh_min_rsa_bits, s.ssh_required) == ("restrict,pty", 3072, True)


def test_store_by_alias_configured_in_its_own_section():
    c = Config()
    c.HardenedDockerSpawner.ssh_key_store_class = "vault"
    c.VaultKeyStore.url = "https://vault.example.org:8200"
    c.VaultKeyStore.mount = "kv"
    store = spawner(c).ssh_key_store()
    assert isinstance(store, VaultKeyStore)
    assert store.describe() == "Vault key store https://vault.example.org:8200 (kv/ssh-keys/<username>)"


def test_unsafe_ssh_settings_are_refused_by_name():
    c = Config()
    c.HardenedDockerSpawner.ssh_key_types = ["ssh-ed25519", "ssh-dss"]
    c.HardenedDockerSpawner.ssh_min_rsa_bits = 2048
    c.HardenedDockerSpawner.ssh_key_options = "restrict,port-forwarding"
    c.HardenedDockerSpawner.ssh_store_timeout = 0.0
    c.FileKeyStore.root = "relative/keys"
    settings = {setting for setting, _ in problems_in(c)}
    assert settings >= {
        "HardenedDockerSpawner.ssh_key_types", "HardenedDockerSpawner.ssh_min_rsa_bits",
        "HardenedDockerSpawner.ssh_key_options", "HardenedDockerSpawner.ssh_store_timeout", "FileKeyStore",
    }
