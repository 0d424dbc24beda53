"""VaultKeyStore through real hvac against the wire-faithful KV v2 + AppRole stand-in.

The first tests pin the stand-in's answers to Vault's documented API (as
hvac reads them); the rest drive the key store through it.
"""

import sys
import time
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
READ_KEYS = [("secret/data/ssh-keys/*", ("read",))]


@pytest.fixture
def vault():
    server = VaultServer().start()
    yield server
    server.stop()


@pytest.fixture
def admin(vault):
    return hvac.Client(url=vault.url, token=vault.state.root_token).secrets.kv.v2


def put(admin, user, value, field="authorized_keys"):
    return admin.create_or_update_secret(path=f"ssh-keys/{user}", secret={field: value})


# ---- the stand-in answers as Vault does -----------------------------------------------
def test_versioned_reads_and_metadata(admin):
    assert put(admin, "ssh-alice", KEY1)["data"]["version"] == 1
    assert put(admin, "ssh-alice", KEY2)["data"]["version"] == 2
    latest = admin.read_secret_version(path="ssh-keys/ssh-alice", raise_on_deleted_version=True)["data"]
    assert latest["data"] == {"authorized_keys": KEY2} and latest["metadata"]["version"] == 2
    first = admin.read_secret_version(path="ssh-keys/ssh-alice", version=1, raise_on_deleted_version=True)
    assert first["data"]["data"] == {"authorized_keys": KEY1}
    meta = admin.read_secret_metadata(path="ssh-keys/ssh-alice")["data"]
    assert meta["current_version"] == 2 and set(meta["versions"]) == {"1", "2"}
    assert admin.list_secrets(path="ssh-keys")["data"]["keys"] == ["ssh-alice"]


def test_deleted_and_destroyed_versions_keep_their_metadata(admin):
    put(admin, "ssh-alice", KEY1)
    put(admin, "ssh-alice", KEY2)
    admin.delete_latest_version_of_secret(path="ssh-keys/ssh-alice")
    with pytest.raises(hx.InvalidPath):
        admin.read_secret_version(path="ssh-keys/ssh-alice", raise_on_deleted_version=True)
    deleted = admin.read_secret_version(path="ssh-keys/ssh-alice", raise_on_deleted_version=False)["data"]
    assert deleted["data"] is None and deleted["metadata"]["deletion_time"] and deleted["metadata"]["version"] == 2
    admin.undelete_secret_versions(path="ssh-keys/ssh-alice", versions=[2])
    assert admin.read_secret_version(path="ssh-keys/ssh-alice", raise_on_deleted_version=True)["data"]["data"]
    admin.destroy_secret_versions(path="ssh-keys/ssh-alice", versions=[1])
    with pytest.raises(hx.InvalidPath) as e:
        admin.read_secret_version(path="ssh-keys/ssh-alice", version=1, raise_on_deleted_version=False)
    assert e.value.json["data"]["metadata"]["destroyed"] is True
    assert admin.read_secret_metadata(path="ssh-keys/ssh-alice")["data"]["versions"]["1"]["destroyed"] is True


def test_check_and_set(admin):
    put(admin, "ssh-alice", KEY1)
    with pytest.raises(hx.InvalidRequest, match="check-and-set"):
        admin.create_or_update_secret(path="ssh-keys/ssh-alice", secret={"authorized_keys": KEY2}, cas=0)
    assert admin.create_or_update_secret(path="ssh-keys/ssh-alice", secret={"authorized_keys": KEY2},
                                         cas=1)["data"]["version"] == 2


def test_404_403_and_approle_login(vault, admin):
    with pytest.raises(hx.InvalidPath):
        admin.read_secret_version(path="ssh-keys/nobody", raise_on_deleted_version=True)
    with pytest.raises(hx.Forbidden, match="permission denied"):
        hvac.Client(url=vault.url, token="hvs.bogus").secrets.kv.v2.read_secret_version(
            path="ssh-keys/x", raise_on_deleted_version=True)
    with pytest.raises(hx.Forbidden):
        hvac.Client(url=vault.url).secrets.kv.v2.read_secret_version(path="ssh-keys/x", raise_on_deleted_version=True)
    role_id, secret_id = vault.state.add_approle("jupyterhub", READ_KEYS)
    client = hvac.Client(url=vault.url)
    auth = client.auth.approle.login(role_id=role_id, secret_id=secret_id)["auth"]
    assert auth["client_token"] == client.token and "jupyterhub" in auth["policies"]
    put(admin, "ssh-alice", KEY1)
    assert client.secrets.kv.v2.read_secret_version(path="ssh-keys/ssh-alice", raise_on_deleted_version=True)
    with pytest.raises(hx.Forbidden):  # read-only policy: no writes, no metadata
        client.secrets.kv.v2.read_secret_metadata(path="ssh-keys/ssh-alice")
    with pytest.raises(hx.InvalidRequest, match="invalid role or secret ID"):
        hvac.Client(url=vault.url).auth.approle.login(role_id=role_id, secret_id="wrong")


# ---- the key store ---------------------------------------------------------------------
def token_store(vault, **kw):
    return VaultKeyStore(url=vault.url, token=vault.state.add_token(READ_KEYS), **kw)


def test_store_reads_the_latest_version_with_a_token(vault, admin):
    store = token_store(vault)
    assert store.fetch("ssh-alice") is None  # no secret: no keys
    put(admin, "ssh-alice", KEY1)
    assert store.fetch("ssh-alice") == KEY1
    put(admin, "ssh-alice", [KEY1, KEY2])
    assert store.fetch("ssh-alice") == f"{KEY1}\n{KEY2}"


def test_a_deleted_or_destroyed_latest_version_means_no_keys(vault, admin):
    store = token_store(vault)
    put(admin, "ssh-alice", KEY1)
    put(admin, "ssh-alice", KEY2)
    admin.delete_latest_version_of_secret(path="ssh-keys/ssh-alice")
    assert store.fetch("ssh-alice") is None  # never falls back to version 1
    admin.undelete_secret_versions(path="ssh-keys/ssh-alice", versions=[2])
    assert store.fetch("ssh-alice") == KEY2
    admin.destroy_secret_versions(path="ssh-keys/ssh-alice", versions=[2])
    assert store.fetch("ssh-alice") is None


def test_approle_login_and_relogin_after_the_token_expires(vault, admin):
    role_id, secret_id = vault.state.add_approle("jupyterhub", READ_KEYS, token_ttl=0.5)
    store = VaultKeyStore(url=vault.url, auth_method="approle", role_id=role_id, secret_id=secret_id)
    put(admin, "ssh-alice", KEY1)
    assert store.fetch("ssh-alice") == KEY1
    logins = sum(1 for m, p in vault.state.requests if p == "/v1/auth/approle/login")
    time.sleep(0.7)
    assert store.fetch("ssh-alice") == KEY1
    assert sum(1 for m, p in vault.state.requests if p == "/v1/auth/approle/login") == logins + 1


def test_credentials_from_files(vault, admin, tmp_path):
    put(admin, "ssh-alice", KEY1)
    (tmp_path / "token").write_text(vault.state.add_token(READ_KEYS) + "\n")
    assert VaultKeyStore(url=vault.url, token_file=str(tmp_path / "token")).fetch("ssh-alice") == KEY1
    role_id, secret_id = vault.state.add_approle("jupyterhub", READ_KEYS)
    (tmp_path / "secret_id").write_text(secret_id)
    store = VaultKeyStore(url=vault.url, auth_method="approle", role_id=role_id,
                          secret_id_file=str(tmp_path / "secret_id"))
    assert store.fetch("ssh-alice") == KEY1


@pytest.mark.parametrize("make, reason", [
    (lambda v: VaultKeyStore(url=v.url, token="hvs.bogus"), "permission denied reading secret/ssh-keys/ssh-alice"),
    (lambda v: VaultKeyStore(url=v.url, token=v.state.add_token([("secret/data/other/*", ("read",))])),
     "permission denied"),
    (lambda v: VaultKeyStore(url=v.url, auth_method="approle", role_id="r", secret_id="s"),
     "login or request refused: invalid role or secret ID"),
    (lambda v: VaultKeyStore(url=v.url, token_file="/nonexistent/token"), "cannot read a credential file"),
])
def test_refusals_fail_closed_with_the_reason(vault, admin, make, reason):
    put(admin, "ssh-alice", KEY1)
    with pytest.raises(KeyStoreError) as e:
        make(vault).fetch("ssh-alice")
    assert reason in e.value.reason
    assert e.value.store.startswith(f"Vault key store {vault.url}")


def test_malformed_secrets_are_errors_not_empty_keys(vault, admin):
    store = token_store(vault)
    put(admin, "ssh-alice", KEY1, field="keys")
    with pytest.raises(KeyStoreError, match="has no field 'authorized_keys'"):
        store.fetch("ssh-alice")
    put(admin, "ssh-alice", {"nested": 1})
    with pytest.raises(KeyStoreError, match="must be text or a list of lines"):
        store.fetch("ssh-alice")


def test_down_and_slow_vault(vault, admin):
    put(admin, "ssh-alice", KEY1)
    store = token_store(vault, timeout=0.3)
    vault.state.delay = 1.0
    with pytest.raises(KeyStoreError, match="no answer within 0.3 s"):
        store.fetch("ssh-alice")
    vault.state.delay = 0
    vault.stop()
    with pytest.raises(KeyStoreError, match="cannot reach"):
        token_store(vault).fetch("ssh-alice")


def test_path_template_and_config_problems(vault, admin):
    admin.create_or_update_secret(path="teams/ml/ssh-alice", secret={"authorized_keys": KEY1})
    token = vault.state.add_token([("secret/data/teams/ml/*", ("read",))])
    assert VaultKeyStore(url=vault.url, token=token, path_template="teams/ml/{username}").fetch("ssh-alice") == KEY1
    assert VaultKeyStore(path_template="ssh-keys/all").config_problems() == ["path_template must contain {username}"]
    assert VaultKeyStore(auth_method="approle").config_problems() == ["auth_method 'approle' needs role_id"]
    assert "auth_method must be" in VaultKeyStore(auth_method="ldap").config_problems()[0]
    with pytest.raises(ValueError):
        VaultKeyStore(url=vault.url, token=token).fetch("../x")
