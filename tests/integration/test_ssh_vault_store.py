"""SSH keys from Vault (KV v2, AppRole) through a real hub; the store failing closed.

The Vault is tests/vault_kv2_server.py (no Vault binary can run here); the
hub and its gateway reach it through real hvac.
"""

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hvac
import pytest
from sshrig import Client, audit_events, awaited_events, containers_of, keygen, keys_api, module_hub

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vault_kv2_server import VaultServer, VaultState  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.hub]

VERA, VIC, WANDA = "ssh-vera", "ssh-vic", "ssh-wanda"
TIMEOUT = 3


def vault_config(vault, role_id, secret_id_file, required=True):
    return f"""
c.HardenedDockerSpawner.ssh_key_store_class = "vault"
c.HardenedDockerSpawner.ssh_store_timeout = {TIMEOUT}
c.HardenedDockerSpawner.ssh_required = {required}
c.VaultKeyStore.url = {vault.url!r}
c.VaultKeyStore.auth_method = "approle"
c.VaultKeyStore.role_id = {role_id!r}
c.VaultKeyStore.secret_id_file = {str(secret_id_file)!r}
c.VaultKeyStore.timeout = 2.0
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory, dclient, image):
    work = tmp_path_factory.mktemp("ssh-vault")
    state = VaultState()
    vault = VaultServer(state).start()
    # read for spawns and the gateway, create/update for the SSH keys page
    role_id, secret_id = state.add_approle("jupyterhub", [("secret/data/ssh-keys/*", ("create", "read", "update"))])
    secret_file = work / "secret_id"
    secret_file.write_text(secret_id)
    secret_file.chmod(0o600)
    admin = hvac.Client(url=vault.url, token=state.root_token).secrets.kv.v2
    keys = {name: keygen(work, name) for name in ("vera", "vic")}
    try:
        with module_hub(work / "hub", dclient, vault_config(vault, role_id, secret_file)) as hub:
            yield {"hub": hub, "vault": vault, "state": state, "admin": admin, "keys": keys, "work": work,
                   "role_id": role_id, "secret_file": secret_file}
    finally:
        vault.stop()


def refused(hub, user):
    """Spawn, expecting a refusal; returns the failure message."""
    events = hub.spawn_and_wait(user)
    assert events[-1].get("failed"), events
    assert hub.server(user) is None and not hub.api("GET", f"/users/{user}").json()["servers"]
    return events[-1]["message"]


def test_keys_from_vault_reach_the_container_through_the_gateway(rig):
    hub, keys = rig["hub"], rig["keys"]
    rig["admin"].create_or_update_secret(path=f"ssh-keys/{VERA}", secret={"authorized_keys": "ssh-rsa AAAA bad"})
    rig["admin"].create_or_update_secret(path=f"ssh-keys/{VERA}", secret={"authorized_keys": keys["vera"][1]})
    messages = [e.get("message", "") for e in hub.spawn_and_wait(VERA)]
    assert any("Fetching your SSH keys from the Vault key store" in m for m in messages)
    assert hub.server(VERA)["ready"], messages
    client = Client(hub, VERA, keys["vera"][0], rig["work"])
    r = client.ssh(VERA, "id -u")
    for _ in range(20):
        if r.returncode == 0:
            break
        r = client.ssh(VERA, "id -u")
    assert r.returncode == 0 and r.stdout.strip() == "1000", r.stderr
    logins = [p for _, p in rig["state"].requests if p == "/v1/auth/approle/login"]
    assert len(logins) >= 2  # the spawner, and the keys service (asked by the gateway), each logged in


def test_a_deleted_latest_version_revokes_at_the_gateway(rig):
    hub, keys = rig["hub"], rig["keys"]
    client = Client(hub, VERA, keys["vera"][0], rig["work"])
    assert client.ssh(VERA, "true").returncode == 0
    rig["admin"].delete_latest_version_of_secret(path=f"ssh-keys/{VERA}")
    r = client.ssh(VERA, "true")
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr
    rig["admin"].undelete_secret_versions(path=f"ssh-keys/{VERA}", versions=[2])
    assert client.ssh(VERA, "true").returncode == 0


def test_keys_added_and_removed_through_the_service_with_check_and_set(rig):
    hub, admin = rig["hub"], rig["admin"]
    lines = [keygen(rig["work"], f"vera-extra{i}")[1] for i in range(5)]
    with ThreadPoolExecutor(len(lines)) as pool:  # concurrent adds race at Vault: check-and-set keeps all
        answers = list(pool.map(lambda line: keys_api(hub, "POST", VERA, json={"key": line}), lines))
    assert [a.status_code for a in answers] == [201] * len(lines), [a.text for a in answers]
    text = admin.read_secret_version(path=f"ssh-keys/{VERA}", raise_on_deleted_version=True)["data"]["data"][
        "authorized_keys"]
    for line in lines:
        assert " ".join(line.split()[:2]) in text
    writes = [m for m, p in rig["state"].requests if m in ("POST", "PUT") and p.endswith(f"data/ssh-keys/{VERA}")]
    assert len(writes) >= len(lines)  # each add is one check-and-set write (more when one lost the race)
    gone = answers[0].json()["key"]["fingerprint"]
    assert keys_api(hub, "DELETE", VERA, gone).status_code == 200
    listing = keys_api(hub, "GET", VERA).json()
    assert gone not in [k["fingerprint"] for k in listing["keys"]] and len(listing["keys"]) == len(lines)
    assert rig["keys"]["vera"][1].split()[1] in [k["public"].split()[1] for k in listing["keys"]]  # never lost
    assert listing["store"].startswith("Vault key store") and listing["writable"]


def test_a_slow_store_fails_closed_and_leaves_no_container(rig, dclient):
    rig["state"].delay = TIMEOUT + 1
    try:
        message = refused(rig["hub"], VIC)
    finally:
        rig["state"].delay = 0
    assert "Your SSH keys could not be read from the Vault key store" in message
    assert containers_of(dclient, VIC) == []
    (event,) = [e for e in audit_events(rig["hub"], "ssh.keys") if e["user"] == VIC]
    assert event["decision"] == "unavailable"
    denied = [e for e in audit_events(rig["hub"], "spawn.denied") if e["user"] == VIC]
    assert denied and "could not be read" in denied[-1]["reasons"][0]


def test_a_store_that_refuses_the_hub_fails_closed(rig, dclient):
    rig["state"].approles[rig["role_id"]] = ("another-secret-id",) + rig["state"].approles[rig["role_id"]][1:]
    rig["state"].tokens.clear()  # every token the hub held is revoked
    message = refused(rig["hub"], VIC)
    assert "invalid role or secret ID" in message
    assert containers_of(dclient, VIC) == []


def test_a_store_that_is_down_fails_closed(rig, dclient):
    rig["vault"].stop()
    message = refused(rig["hub"], VIC)
    assert f"Vault key store {rig['vault'].url}" in message and "cannot reach" in message
    assert "This hub requires SSH keys at every start" in message
    assert containers_of(dclient, VIC) == []
    assert not any(e["event"] == "spawn" and e["user"] == VIC for e in rig["hub"].audit())


def test_spawn_without_ssh_when_the_admin_allows_it(tmp_path, dclient, image):
    vault = VaultServer().start()
    vault.stop()  # down from the start
    secret_file = tmp_path / "secret_id"
    secret_file.write_text("x")
    with module_hub(tmp_path / "hub", dclient, vault_config(vault, "r", secret_file, required=False)) as hub:
        messages = [e.get("message", "") for e in hub.spawn_and_wait(WANDA)]
        assert hub.server(WANDA)["ready"], messages
        assert any("SSH keys unavailable" in m and "starting without SSH" in m for m in messages)
        (container,) = containers_of(dclient, WANDA)
        assert b"starting sshd" not in dclient.logs(container["Id"])
        key, _ = keygen(tmp_path, "wanda")
        r = Client(hub, WANDA, key, tmp_path).ssh(WANDA, "true")
        assert r.returncode == 255  # the gateway cannot read the store: nobody authenticates
        assert [e["reason"] for e in awaited_events(hub, "ssh.gateway.auth")][-1].startswith("Vault key store")
