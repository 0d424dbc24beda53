import os

import pytest

from hardened_spawner.keys.stores import KeyStoreError, SwarmSecretKeyStore

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@test\n"


def secrets_dir(tmp_path):
    root = tmp_path / "secrets"
    root.mkdir(mode=0o755)
    secret = root / "ssh-keys-alice"
    secret.write_text(KEY)
    secret.chmod(0o444)  # how Swarm mounts a secret by default
    return root


def test_reads_the_users_secret_file(tmp_path):
    store = SwarmSecretKeyStore(root=str(secrets_dir(tmp_path)))
    assert store.fetch("alice") == KEY
    assert store.fetch("bob") is None  # no secret attached: no keys
    assert store.describe().endswith("/ssh-keys-{username}")


def test_refuses_unsafe_names_and_files(tmp_path):
    root = secrets_dir(tmp_path)
    store = SwarmSecretKeyStore(root=str(root))
    with pytest.raises(ValueError):
        store.fetch("../etc")
    os.chmod(root / "ssh-keys-alice", 0o666)
    with pytest.raises(KeyStoreError, match="writable by group or others"):
        store.fetch("alice")
    with pytest.raises(KeyStoreError, match="is the hub running as a swarm service"):
        SwarmSecretKeyStore(root=str(tmp_path / "missing")).fetch("alice")


def test_name_template_is_checked():
    assert SwarmSecretKeyStore(name_template="keys").config_problems()
    assert SwarmSecretKeyStore(name_template="a/{username}").config_problems()
    assert SwarmSecretKeyStore().config_problems() == []
