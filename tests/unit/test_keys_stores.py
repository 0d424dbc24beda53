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


# ---- writes from the SSH keys page ------------------------------------------------------
def modes(path):
    return oct(os.stat(path).st_mode & 0o777)


def test_update_creates_the_user_directory_and_file_with_safe_modes(store):
    old_umask = os.umask(0o002)  # a permissive umask does not leak into the store
    try:
        assert store.update("ssh-alice", lambda text: text + KEY) == KEY
    finally:
        os.umask(old_umask)
    directory = os.path.join(store.root, "ssh-alice")
    assert modes(directory) == "0o755" and modes(os.path.join(directory, "authorized_keys")) == "0o644"
    assert store.fetch("ssh-alice") == KEY
    assert os.listdir(directory) == ["authorized_keys"]  # no temporary file left behind
    inode = os.stat(os.path.join(directory, "authorized_keys")).st_ino
    store.update("ssh-alice", lambda text: "")
    assert store.fetch("ssh-alice") == ""
    assert os.stat(os.path.join(directory, "authorized_keys")).st_ino != inode  # replaced by a rename


def test_a_failing_change_leaves_the_file_as_it_was(store):
    write(store, "ssh-alice", KEY)

    def change(text):
        raise ValueError("refused")

    with pytest.raises(ValueError):
        store.update("ssh-alice", change)
    assert store.fetch("ssh-alice") == KEY
    assert os.listdir(os.path.join(store.root, "ssh-alice")) == ["authorized_keys"]


@pytest.mark.parametrize("mode, dir_mode", [(0o666, 0o755), (0o644, 0o775)])
def test_update_refuses_keys_others_could_write(store, mode, dir_mode):
    write(store, "ssh-alice", KEY, mode, dir_mode)
    with pytest.raises(KeyStoreError, match="writable by group or others"):
        store.update("ssh-alice", lambda text: text + KEY)


def test_update_refuses_a_symlinked_user_directory(store, tmp_path):
    (tmp_path / "elsewhere").mkdir(mode=0o755)
    os.symlink(tmp_path / "elsewhere", os.path.join(store.root, "ssh-alice"))
    with pytest.raises(KeyStoreError, match="not a directory"):
        store.update("ssh-alice", lambda text: KEY)
    assert os.listdir(tmp_path / "elsewhere") == []


def test_concurrent_updates_lose_nothing(store):
    import threading

    lines = [f"# line {i}\n" for i in range(40)]
    barrier = threading.Barrier(len(lines))

    def add(line):
        barrier.wait()
        store.update("ssh-alice", lambda text: text + line)

    threads = [threading.Thread(target=add, args=(line,)) for line in lines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(store.fetch("ssh-alice").splitlines(keepends=True)) == sorted(lines)


def test_a_read_only_store_refuses_changes_and_says_so(store, tmp_path):
    store.read_only = True
    assert "read-only on this hub" in store.read_only_reason()
    with pytest.raises(KeyStoreError, match="read-only"):
        store.update("ssh-alice", lambda text: KEY)
    assert not os.path.exists(os.path.join(store.root, "ssh-alice"))
    assert FileKeyStore(root=str(tmp_path)).read_only_reason() == ""
    with pytest.raises(KeyStoreError, match="root directory does not exist"):
        FileKeyStore(root=str(tmp_path / "gone")).update("ssh-alice", lambda text: KEY)


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop\n"


@pytest.mark.parametrize("what", ["file", "user directory", "root"])
def test_keys_another_account_could_have_planted_are_refused(store, what):
    """Hole 11: only group/other write bits were checked, so an account owning the file, the user's
    directory or the store's root (or a root others may write) could plant keys for any user."""
    write(store, "alice", KEY)
    path = {"file": os.path.join(store.root, "alice", "authorized_keys"),
            "user directory": os.path.join(store.root, "alice"), "root": store.root}[what]
    os.chown(path, 4242, 4242)
    with pytest.raises(KeyStoreError, match="owned by uid 4242, not by root or the hub's user"):
        store.fetch("alice")
    os.chown(path, 0, 0)
    assert store.fetch("alice") == KEY


def test_a_root_others_may_write_is_refused(store):
    """Anyone who can write the root can create a directory for a user who has none yet."""
    write(store, "alice", KEY)
    os.chmod(store.root, 0o777)
    with pytest.raises(KeyStoreError, match="root .* is writable by group or others"):
        store.fetch("alice")
