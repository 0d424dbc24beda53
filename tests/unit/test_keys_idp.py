"""Keys from the identity provider: a claim in auth_state, alone or with a store users manage."""

import asyncio
import os
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from hardened_spawner.keys.idp import IDP_SOURCE, IdPKeyStore, claim_value, keys_from_claim
from hardened_spawner.keys.stores import FileKeyStore, KeyStoreError
from hardened_spawner.spawner import HardenedDockerSpawner

IDP_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ldap"
OWN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBlDv3oJqjlBsjlBHc2uHmdUvjUjMSsKQq4Bl7eCq1Ur mine"


def auth_state(value, claim="ssh_public_keys"):
    return {"oauth_user": {"preferred_username": "alice", claim: value}, "access_token": "not-read"}


def test_claims_as_a_string_of_lines_or_a_list_and_by_dotted_path():
    assert keys_from_claim(f"{IDP_KEY}\n{OWN_KEY}") == f"{IDP_KEY}\n{OWN_KEY}"
    assert keys_from_claim([IDP_KEY, 7, OWN_KEY]) == f"{IDP_KEY}\n{OWN_KEY}"
    assert keys_from_claim(None) == "" and keys_from_claim({"x": 1}) == ""
    assert claim_value({"ldap": {"sshPublicKey": [IDP_KEY]}}, "ldap.sshPublicKey") == [IDP_KEY]
    assert claim_value({"ldap": "x"}, "ldap.sshPublicKey") is None


def test_idp_only_store_reads_the_claim_handed_over_and_is_read_only():
    store = IdPKeyStore()
    assert store.fetch("alice") is None  # nothing handed over yet: no keys
    store.use_auth_state("alice", auth_state([IDP_KEY]))
    assert store.fetch("alice") == IDP_KEY
    assert [(s.name, s.writable) for s in store.sources("alice")] == [(IDP_SOURCE, False)]
    assert "identity provider" in store.read_only_reason()
    with pytest.raises(KeyStoreError, match="change them there"):
        store.update("alice", lambda text: text + OWN_KEY)
    store.use_auth_state("alice", auth_state([]))  # refreshed: the IdP removed it
    assert store.fetch("alice") is None
    store.use_auth_state("alice", None)  # no auth_state at all
    assert store.fetch("alice") is None


def test_combined_with_a_file_store_users_manage(tmp_path):
    c = Config()
    c.IdPKeyStore.combine_with = "file"
    c.IdPKeyStore.claim = "ldap.sshPublicKey"
    c.FileKeyStore.root = str(tmp_path)
    store = IdPKeyStore(config=c)
    assert isinstance(store.other, FileKeyStore) and store.read_only_reason() == ""
    store.use_auth_state("alice", auth_state({"sshPublicKey": IDP_KEY}, claim="ldap"))
    store.update("alice", lambda text: text + OWN_KEY + "\n")
    assert oct(os.stat(tmp_path / "alice" / "authorized_keys").st_mode & 0o777) == "0o644"
    assert store.fetch("alice") == f"{OWN_KEY}\n\n{IDP_KEY}"
    assert [(s.name, s.writable) for s in store.sources("alice")] == [
        (f"file key store {tmp_path}", True), (IDP_SOURCE, False)]
    assert store.describe() == f"claim 'ldap.sshPublicKey' from the identity provider and the file key store {tmp_path}"


def test_config_problems():
    looping = Config()
    looping.IdPKeyStore.combine_with = "idp"
    assert IdPKeyStore(config=looping).config_problems() == ["combine_with cannot be the IdP store itself"]
    assert IdPKeyStore(claim="").config_problems() == ["claim must name the userinfo claim that holds the keys"]
    c = Config()
    c.IdPKeyStore.combine_with = "file"
    c.FileKeyStore.root = "relative"
    assert IdPKeyStore(config=c).config_problems() == ["FileKeyStore: root must be an absolute path, not 'relative'"]


def test_the_spawner_hands_auth_state_to_its_store_before_a_start(tmp_path):
    c = Config()
    c.HardenedDockerSpawner.ssh_key_store_class = "idp"
    spawner = HardenedDockerSpawner(config=c, user=SimpleNamespace(name="alice"))
    asyncio.run(spawner.run_auth_state_hook(auth_state(IDP_KEY)))
    assert spawner.ssh_key_store().fetch("alice") == IDP_KEY
