"""SSH settings on the spawner: store selection, and unsafe settings refused at hub start."""

from types import SimpleNamespace

from traitlets.config import Config

from hardened_spawner.config_check import problems_in
from hardened_spawner.keys.stores import FileKeyStore
from hardened_spawner.keys.vault import VaultKeyStore
from hardened_spawner.keys.validation import DEFAULT_FORCED_OPTIONS
from hardened_spawner.spawner import HardenedDockerSpawner


def spawner(config):
    return HardenedDockerSpawner(config=config, user=SimpleNamespace(name="ssh-alice"))


def test_defaults_are_safe_and_ssh_is_off_without_a_store():
    s = spawner(Config())
    assert s.ssh_config_problems() == []
    assert isinstance(s.ssh_key_store(), FileKeyStore) and not s.ssh_key_store().configured()
    assert (s.ssh_key_options, s.ssh_min_rsa_bits, s.ssh_required) == (DEFAULT_FORCED_OPTIONS, 3072, True)


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


SHIPPED_STORES = {"file": "FileKeyStore", "idp": "IdPKeyStore", "swarm-secret": "SwarmSecretKeyStore",
                  "vault": "VaultKeyStore"}


def test_every_shipped_store_is_registered_in_the_entry_point_group_and_chosen_by_its_name():
    from importlib.metadata import entry_points

    from hardened_spawner.keys.stores import GROUP, KeyStore

    registered = {ep.name: ep.load() for ep in entry_points(group=GROUP)}
    assert {name: cls.__name__ for name, cls in registered.items()} == SHIPPED_STORES
    for name, cls in registered.items():
        c = Config()
        c.HardenedDockerSpawner.ssh_key_store_class = name
        assert issubclass(cls, KeyStore) and type(spawner(c).ssh_key_store()) is cls


def test_a_store_another_package_registers_is_chosen_by_name_everywhere_without_editing_this_one(
        tmp_path, monkeypatch):
    """What adding a key store takes: its module and its entry point (here a second installed package)."""
    (tmp_path / "sitekeys.py").write_text(
        "from hardened_spawner.keys.stores import KeyStore\n\n"
        "class SiteKeyStore(KeyStore):\n"
        "    def describe(self):\n        return 'site key store'\n\n"
        "    def fetch(self, username):\n        return None\n")
    dist = tmp_path / "sitekeys-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sitekeys\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[hardened_spawner.key_stores]\nsite = sitekeys:SiteKeyStore\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    c = Config()
    c.HardenedDockerSpawner.ssh_key_store_class = "site"
    c.IdPKeyStore.combine_with = "site"
    assert spawner(c).ssh_key_store().describe() == "site key store"
    from hardened_spawner.keys.idp import IdPKeyStore

    assert IdPKeyStore(config=c).other.describe() == "site key store"
    assert "- site: sitekeys.SiteKeyStore" in spawner(c).traits()["ssh_key_store_class"].help  # the hub's --help-all


def test_the_reference_lists_every_registered_store_with_a_section_of_its_own():
    from hardened_spawner.tools.docs_reference import render

    text = render()
    for name, cls in SHIPPED_STORES.items():
        assert f"- `{name}`: `hardened_spawner.keys." in text
        assert f"## {cls}\n\nConfigured as `c.{cls}`; `ssh_key_store_class = '{name}'`." in text
