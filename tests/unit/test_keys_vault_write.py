"""Writes to Vault KV v2 through real hvac: check-and-set, so concurrent edits never lose a key.

The first tests pin the stand-in's check-and-set answers to the KV v2
plugin's (``validateCheckAndSetOption``); the rest drive the key store.
"""

import sys
import threading
from pathlib import Path

import hvac
import hvac.exceptions as hx
import pytest

from hardened_spawner.keys.stores import KeyStoreError
from hardened_spawner.keys.vault import VaultKeyStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vault_kv2_server import VaultServer  # noqa: E402

KEY1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl one"
KEY2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBlDv3oJqjlBsjlBHc2uHmdUvjUjMSsKQq4Bl7eCq1Ur two"
WRITE_KEYS = [("secret/data/ssh-keys/*", ("create", "read", "update"))]
READ_KEYS = [("secret/data/ssh-keys/*", ("read",))]
PATH = "ssh-keys/ssh-alice"


@pytest.fixture
def vault():
    server = VaultServer().start()
    yield server
    server.stop()


@pytest.fixture
def admin(vault):
    return hvac.Client(url=vault.url, token=vault.state.root_token).secrets.kv.v2


def store(vault, rules=WRITE_KEYS, **kw):
    return VaultKeyStore(url=vault.url, token=vault.state.add_token(rules), **kw)


def latest(admin):
    data = admin.read_secret_version(path=PATH, raise_on_deleted_version=True)["data"]
    return data["metadata"]["version"], data["data"]


# ---- the stand-in's check-and-set is the KV v2 plugin's ---------------------------------
def test_cas_zero_creates_only_and_a_refused_write_creates_nothing(vault, admin):
    with pytest.raises(hx.InvalidRequest, match="check-and-set parameter did not match the current version"):
        admin.create_or_update_secret(path=PATH, secret={"k": "v"}, cas=3)
    with pytest.raises(hx.InvalidPath):  # no metadata was left behind by the refused write
        admin.read_secret_metadata(path=PATH)
    assert admin.create_or_update_secret(path=PATH, secret={"k": "v"}, cas=0)["data"]["version"] == 1
    with pytest.raises(hx.InvalidRequest, match="did not match"):
        admin.create_or_update_secret(path=PATH, secret={"k": "w"}, cas=0)


def test_cas_counts_a_deleted_latest_version_and_parses_like_weakdecode(vault, admin):
    admin.create_or_update_secret(path=PATH, secret={"k": "v"})
    admin.delete_latest_version_of_secret(path=PATH)
    with pytest.raises(hx.InvalidRequest, match="did not match"):
        admin.create_or_update_secret(path=PATH, secret={"k": "w"}, cas=0)
    assert admin.create_or_update_secret(path=PATH, secret={"k": "w"}, cas="1")["data"]["version"] == 2
    with pytest.raises(hx.InvalidRequest, match="error parsing check-and-set parameter"):
        admin.create_or_update_secret(path=PATH, secret={"k": "x"}, cas="two")


def test_cas_required_by_the_key_or_the_mount(vault, admin):
    admin.create_or_update_secret(path=PATH, secret={"k": "v"})
    admin.update_metadata(path=PATH, cas_required=True)
    assert admin.read_secret_metadata(path=PATH)["data"]["cas_required"] is True
    with pytest.raises(hx.InvalidRequest, match="check-and-set parameter required for this call"):
        admin.create_or_update_secret(path=PATH, secret={"k": "w"})
    assert admin.create_or_update_secret(path=PATH, secret={"k": "w"}, cas=1)["data"]["version"] == 2
    admin.configure(cas_required=True)
    with pytest.raises(hx.InvalidRequest, match="required for this call"):
        admin.create_or_update_secret(path="ssh-keys/other", secret={"k": "v"})


# ---- the key store ----------------------------------------------------------------------
def test_update_writes_a_new_version_with_cas(vault, admin):
    s = store(vault)
    assert s.read_only_reason() == ""
    assert s.update("ssh-alice", lambda text: text + KEY1 + "\n") == KEY1 + "\n"
    assert latest(admin) == (1, {"authorized_keys": KEY1 + "\n"})
    s.update("ssh-alice", lambda text: text + KEY2 + "\n")
    assert latest(admin) == (2, {"authorized_keys": f"{KEY1}\n{KEY2}\n"})
    s.update("ssh-alice", lambda text: text.replace(KEY1 + "\n", ""))
    assert s.fetch("ssh-alice") == KEY2 + "\n"
    writes = [m for m, p in vault.state.requests if m in ("POST", "PUT") and p.endswith(PATH)]
    assert len(writes) == 3


def test_other_fields_of_the_secret_are_kept(vault, admin):
    admin.create_or_update_secret(path=PATH, secret={"authorized_keys": [KEY1], "owner": "team-ml"})
    store(vault).update("ssh-alice", lambda text: text + "\n" + KEY2)
    assert latest(admin)[1] == {"authorized_keys": f"{KEY1}\n{KEY2}", "owner": "team-ml"}


def test_a_concurrent_edit_between_read_and_write_is_not_lost(vault, admin):
    s = store(vault)
    calls = []

    def add_key2(text):
        calls.append(text)
        if len(calls) == 1:  # another writer (an admin's tooling) gets in first
            admin.create_or_update_secret(path=PATH, secret={"authorized_keys": KEY1 + "\n"})
        return text + KEY2 + "\n"

    s.update("ssh-alice", add_key2)
    assert calls == ["", KEY1 + "\n"]  # the change was applied again to the newer text
    assert latest(admin) == (2, {"authorized_keys": f"{KEY1}\n{KEY2}\n"})


def test_many_concurrent_writers_lose_nothing(vault, admin):
    lines = [f"# writer {i}\n" for i in range(12)]
    barrier = threading.Barrier(len(lines))
    errors = []

    def add(line):
        s = store(vault, cas_attempts=50)
        barrier.wait()
        try:
            s.update("ssh-alice", lambda text: text + line)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=add, args=(line,)) for line in lines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    version, data = latest(admin)
    assert version == len(lines) and sorted(data["authorized_keys"].splitlines(keepends=True)) == sorted(lines)


def test_a_writer_that_keeps_losing_gives_up_with_a_reason(vault, admin):
    s = store(vault, cas_attempts=3)

    def always_overtaken(text):
        admin.create_or_update_secret(path=PATH, secret={"authorized_keys": "# someone else\n"})
        return text + KEY1

    with pytest.raises(KeyStoreError, match=r"kept changing while the hub wrote it \(3 attempts\)"):
        s.update("ssh-alice", always_overtaken)


def test_a_deleted_latest_version_is_a_revocation_the_next_write_starts_empty(vault, admin):
    admin.create_or_update_secret(path=PATH, secret={"authorized_keys": KEY1})
    admin.delete_latest_version_of_secret(path=PATH)
    seen = []
    store(vault).update("ssh-alice", lambda text: seen.append(text) or KEY2)
    assert seen == [""] and latest(admin) == (2, {"authorized_keys": KEY2})
    admin.destroy_secret_versions(path=PATH, versions=[2])
    store(vault).update("ssh-alice", lambda text: seen.append(text) or KEY1)
    assert seen == ["", ""] and latest(admin) == (3, {"authorized_keys": KEY1})


def test_a_read_only_policy_or_setting_refuses_writes_with_the_reason(vault, admin):
    with pytest.raises(KeyStoreError, match="permission denied writing secret/ssh-keys/ssh-alice"):
        store(vault, READ_KEYS).update("ssh-alice", lambda text: KEY1)
    s = store(vault, read_only=True)
    assert "read-only on this hub" in s.read_only_reason()
    with pytest.raises(KeyStoreError, match="read-only"):
        s.update("ssh-alice", lambda text: KEY1)
    with pytest.raises(hx.InvalidPath):
        admin.read_secret_version(path=PATH, raise_on_deleted_version=True)
