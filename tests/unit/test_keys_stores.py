"""The file key store: layout, absent keys, refusals that fail closed."""

import os

import pytest

from hardened_spawner.keys.stores import FileKeyStore, KeyStoreError, check_username

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b\n"


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "keys"
    root.mkdir()
    return FileKeyStore(root=str(root))


def write(store, user, text, mode=0o644, dir_mode=0o755):
    d = os.path.join(store.root, user)
    os.makedirs(d, exist_ok=True)
    os.chmod(d, dir_mode)
    path = os.path.join(d, "authorized_keys")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def test_reads_root_user_authorized_keys(store):
    write(store, "ssh-alice", KEY)
    assert store.fetch("ssh-alice") == KEY
    assert store.configured() and store.describe() == f"file key store {store.root}"


def test_a_user_without_a_file_or_directory_has_no_keys(store):
    assert store.fetch("ssh-nobody") is None
    os.mkdir(os.path.join(store.root, "ssh-empty"))
    assert store.fetch("ssh-empty") is None


def test_a_missing_root_is_a_store_failure(tmp_path):
    store = FileKeyStore(root=str(tmp_path / "gone"))
    with pytest.raises(KeyStoreError) as e:
        store.fetch("ssh-alice")
    assert e.value.store == f"file key store {tmp_path / 'gone'}"
    assert e.value.reason == "its root directory does not exist"


@pytest.mark.parametrize("mode, dir_mode", [(0o666, 0o755), (0o644, 0o777), (0o664, 0o755)])
def test_keys_writable_by_others_are_refused(store, mode, dir_mode):
    write(store, "ssh-alice", KEY, mode, dir_mode)
    with pytest.raises(KeyStoreError, match="writable by group or others"):
        store.fetch("ssh-alice")


def test_symlinks_and_non_files_are_refused(store, tmp_path):
    os.makedirs(os.path.join(store.root, "ssh-alice"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(KEY)
    os.symlink(elsewhere, os.path.join(store.root, "ssh-alice", "authorized_keys"))
    with pytest.raises(KeyStoreError, match="symbolic link"):
        store.fetch("ssh-alice")
    os.makedirs(os.path.join(store.root, "ssh-bob", "authorized_keys"))
    with pytest.raises(KeyStoreError, match="not a regular file"):
        store.fetch("ssh-bob")


def test_oversized_files_are_refused(store):
    write(store, "ssh-alice", KEY * 100)
    store.max_bytes = 1000
    with pytest.raises(KeyStoreError, match="larger than 1000 bytes"):
        store.fetch("ssh-alice")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../etc", "a\\b", "a\0b"])
def test_names_that_could_escape_the_layout_are_refused(store, name):
    with pytest.raises(ValueError):
        check_username(name)
    with pytest.raises(ValueError):
        store.fetch(name)


def test_an_unset_root_means_no_store_and_a_relative_one_is_a_config_problem():
    assert not FileKeyStore().configured()
    assert FileKeyStore().config_problems() == []
    assert "absolute" in FileKeyStore(root="keys").config_problems()[0]
