"""The SSH keys service end to end: page and REST API, live delivery, revocation, who may do what.

One real hub (file key store, the keys service and the gateway as managed
services); a server that starts with no key at all; real OpenSSH clients.
"""

import re
import subprocess
import time

import pytest
from hardened_spawner.keys.validation import DEFAULT_FORCED_OPTIONS
from sshrig import (
    Client, audit_events, containers_of, keygen, keys_file_in, module_hub, service_session,
)

pytestmark = [pytest.mark.docker, pytest.mark.hub]

ALICE, BOB, ADMIN = "ssh-kalice", "ssh-kbob", "admin"
PREFIX = "/services/ssh-keys/"


@pytest.fixture(scope="module")
def rig(tmp_path_factory, dclient, image):
    work = tmp_path_factory.mktemp("ssh-keys")
    keys = {name: keygen(work, name) for name in ("alice", "alice2", "bob", "admin-added")}
    keys["rsa1024"] = keygen(work, "rsa1024", "rsa", 1024)
    keys["rsa3072"] = keygen(work, "rsa3072", "rsa", 3072)
    with module_hub(work / "hub", dclient) as hub:
        for user in (ALICE, BOB):
            hub.ensure_user(user)
        hub.users.add(ADMIN)
        events = hub.spawn_and_wait(ALICE)  # no key anywhere yet
        assert hub.server(ALICE)["ready"], events
        yield {"hub": hub, "keys": keys, "work": work, "store": hub.state / "ssh-keys",
               "alice": service_session(hub, ALICE), "bob": service_session(hub, BOB),
               "admin": service_session(hub, ADMIN)}


def xsrf(page):
    return re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)


def add_on_page(rig, who, user, key):
    session = rig[who]
    page = session.get(f"{rig['hub'].url}{PREFIX}users/{user}", timeout=30)
    return session.post(f"{rig['hub'].url}{PREFIX}users/{user}/add", timeout=60,
                        data={"_xsrf": xsrf(page), "key": key})


def remove_on_page(rig, who, user, fingerprint):
    session = rig[who]
    page = session.get(f"{rig['hub'].url}{PREFIX}users/{user}", timeout=30)
    return session.post(f"{rig['hub'].url}{PREFIX}users/{user}/remove", timeout=60,
                        data={"_xsrf": xsrf(page), "fingerprint": fingerprint})


def fingerprint(public_line):
    return subprocess.run(["ssh-keygen", "-lf", "-"], input=public_line, capture_output=True, text=True,
                          check=True).stdout.split()[1]


def stored(rig, user):
    path = rig["store"] / user / "authorized_keys"
    return path.read_bytes() if path.exists() else b""


def until(check, timeout=60, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def test_a_key_added_on_the_page_works_in_the_running_server_without_a_restart(rig, dclient):
    hub, keys = rig["hub"], rig["keys"]
    (container,) = containers_of(dclient, ALICE)
    client = Client(hub, ALICE, keys["alice"][0], rig["work"])
    assert client.ssh(ALICE, "true").returncode == 255  # no key yet
    started = time.monotonic()
    r = add_on_page(rig, "alice", ALICE, keys["alice"][1])
    assert r.status_code == 200, r.text
    assert f"Key {fingerprint(keys['alice'][1])} (ssh-ed25519) added." in r.text
    assert "keys updated now, no restart needed" in r.text
    ok = until(lambda: client.ssh(ALICE, "id -un").returncode == 0, timeout=60)
    rig["live_seconds"] = time.monotonic() - started
    assert ok, client.ssh(ALICE, "id -un").stderr
    assert containers_of(dclient, ALICE)[0]["Id"] == container["Id"]  # the same container: no restart
    assert keys_file_in(dclient, container["Id"]) == f"{DEFAULT_FORCED_OPTIONS} {' '.join(keys['alice'][1].split()[:2])}\n"
    (added,) = [e for e in audit_events(hub, "ssh.keys.added") if e["user"] == ALICE]
    assert added["actor"] == ALICE and added["fingerprint"] == fingerprint(keys["alice"][1])
    (live,) = [e for e in audit_events(hub, "ssh.keys.live") if e["user"] == ALICE]
    assert live["decision"] == "delivered" and live["server"] == ""
    print(f"add -> first successful ssh through the gateway: {rig['live_seconds']:.1f} s")


@pytest.mark.parametrize("name, make, words", [
    ("private key", lambda k: open(k["alice2"][0]).read(), "That is a PRIVATE key"),
    ("1024-bit RSA", lambda k: k["rsa1024"][1], "RSA key has 1024 bits; at least 3072 are required"),
    ("command= option", lambda k: 'command="/bin/sh" ' + k["alice2"][1], "starts with authorized_keys options"),
    ("ssh-rsa-cert", lambda k: k["cert"], "Certificates are not accepted"),
    ("100 KB paste", lambda k: k["alice2"][1] + " " + "A" * 100 * 1024, "a public key is one line of at most"),
    ("non-UTF-8 bytes", lambda k: b"ssh-ed25519 \xff\xfe caf\xe9", "That is not UTF-8 text"),
])
def test_bad_keys_get_a_clear_message_and_change_nothing(rig, name, make, words):
    keys = rig["keys"]
    if "cert" not in keys:  # a real OpenSSH user certificate of the 3072-bit RSA key
        ca, _ = keygen(rig["work"], "ca", "rsa", 3072)
        subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "alice", "-n", "jovyan",
                        str(keys["rsa3072"][0]) + ".pub"], check=True)
        keys["cert"] = (rig["work"] / "rsa3072-cert.pub").read_text().strip()
        assert keys["cert"].startswith("ssh-rsa-cert-v01@openssh.com ")
    before = stored(rig, ALICE)
    refused_before = len(audit_events(rig["hub"], "ssh.keys.refused"))
    pasted = make(keys)
    r = add_on_page(rig, "alice", ALICE, pasted)
    assert r.status_code == 400 and words in r.text, r.text[-2000:]
    assert "Not added, nothing changed." in r.text
    assert stored(rig, ALICE) == before
    token = rig["hub"].api("POST", f"/users/{ALICE}/tokens", json={"note": "test"}).json()["token"]
    body = pasted if isinstance(pasted, bytes) else pasted.encode()
    r = rig["alice"].post(f"{rig['hub'].url}{PREFIX}api/users/{ALICE}/keys", data=body, timeout=60,
                          headers={"Authorization": f"token {token}", "Content-Type": "text/plain"})
    assert r.status_code == 400 and words in r.json()["message"], r.text
    assert stored(rig, ALICE) == before
    refused = audit_events(rig["hub"], "ssh.keys.refused")[refused_before:]
    assert len(refused) == 2 and all(e["user"] == ALICE and words in e["reason"] for e in refused)
    text = pasted.decode("latin-1") if isinstance(pasted, bytes) else pasted
    longest = max(text.split(), key=len)
    if len(longest) >= 60:  # no piece of what was pasted reaches the audit log or the hub's log
        assert longest[10:50] not in (rig["hub"].state / "audit.log").read_text()
        assert longest[10:50] not in rig["hub"].log()


def test_users_cannot_touch_each_others_keys_through_the_page_or_the_api(rig):
    hub, keys = rig["hub"], rig["keys"]
    assert add_on_page(rig, "bob", BOB, keys["bob"][1]).status_code == 200
    bob_before, alice_before = stored(rig, BOB), stored(rig, ALICE)
    page = rig["alice"].get(f"{hub.url}{PREFIX}users/{BOB}", timeout=30)
    assert page.status_code == 403 and "only see and change your own SSH keys" in page.text
    own = rig["alice"].get(f"{hub.url}{PREFIX}", timeout=30)
    assert rig["alice"].post(f"{hub.url}{PREFIX}users/{BOB}/add", timeout=30,
                             data={"_xsrf": xsrf(own), "key": keys["alice2"][1]}).status_code == 403
    assert rig["alice"].post(f"{hub.url}{PREFIX}users/{BOB}/remove", timeout=30,
                             data={"_xsrf": xsrf(own), "fingerprint": fingerprint(keys["bob"][1])}).status_code == 403
    token = hub.api("POST", f"/users/{ALICE}/tokens", json={"note": "test"}).json()["token"]
    api = f"{hub.url}{PREFIX}api/users/{BOB}/keys"
    auth = {"Authorization": f"token {token}"}
    assert rig["alice"].get(api, headers=auth, timeout=30).status_code == 403
    assert rig["alice"].post(api, json={"key": keys["alice2"][1]}, headers=auth, timeout=30).status_code == 403
    fp = fingerprint(keys["bob"][1]).replace("/", "%2F").replace("+", "%2B")
    assert rig["alice"].delete(f"{api}/{fp}", headers=auth, timeout=30).status_code == 403
    assert stored(rig, BOB) == bob_before and stored(rig, ALICE) == alice_before
    mine = rig["alice"].get(f"{hub.url}{PREFIX}api/users/{ALICE}/keys", headers=auth, timeout=30)
    assert mine.status_code == 200 and [k["fingerprint"] for k in mine.json()["keys"]] == [
        fingerprint(keys["alice"][1])]
    assert mine.json()["keys"][0]["usable"] and mine.json()["writable"]


def test_a_form_without_the_xsrf_token_is_refused(rig):
    hub, keys = rig["hub"], rig["keys"]
    before = stored(rig, ALICE)
    r = rig["alice"].post(f"{hub.url}{PREFIX}users/{ALICE}/add", data={"key": keys["alice2"][1]}, timeout=30)
    assert r.status_code == 403
    r = rig["alice"].post(f"{hub.url}{PREFIX}api/users/{ALICE}/keys", json={"key": keys["alice2"][1]}, timeout=30)
    assert r.status_code == 403  # the cookie alone does not authenticate a write
    assert stored(rig, ALICE) == before


def test_an_admin_views_adds_and_revokes_any_users_keys(rig):
    hub, keys = rig["hub"], rig["keys"]
    page = rig["admin"].get(f"{hub.url}{PREFIX}users/{BOB}", timeout=30)
    assert page.status_code == 200 and fingerprint(keys["bob"][1]) in page.text
    assert "Manage another user's keys" in page.text
    assert add_on_page(rig, "admin", BOB, keys["admin-added"][1]).status_code == 200
    r = remove_on_page(rig, "admin", BOB, fingerprint(keys["bob"][1]))
    assert r.status_code == 200 and f"Key {fingerprint(keys['bob'][1])} removed." in r.text
    listing = rig["admin"].get(f"{hub.url}{PREFIX}api/users/{BOB}/keys", timeout=30).json()
    assert [k["fingerprint"] for k in listing["keys"]] == [fingerprint(keys["admin-added"][1])]
    removed = [e for e in audit_events(hub, "ssh.keys.removed") if e["user"] == BOB]
    assert [(e["actor"], e["fingerprint"]) for e in removed] == [(ADMIN, fingerprint(keys["bob"][1]))]
    assert keys["bob"][1].split()[1][20:80] not in page.text  # fingerprints, never keys
    assert rig["admin"].get(f"{hub.url}{PREFIX}users/nobody-here", timeout=30).status_code == 404


def test_removing_a_key_closes_its_open_session_and_refuses_the_next(rig, dclient):
    hub, keys = rig["hub"], rig["keys"]
    client = Client(hub, ALICE, keys["alice"][0], rig["work"])
    assert until(lambda: client.ssh(ALICE, "true").returncode == 0, timeout=30)
    session = subprocess.Popen(["ssh", "-F", str(client.config), ALICE, "echo open; sleep 600"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert session.stdout.readline().strip() == "open"
        removed_at = time.monotonic()
        r = remove_on_page(rig, "alice", ALICE, fingerprint(keys["alice"][1]))
        assert r.status_code == 200 and "keys updated now" in r.text
        r = client.ssh(ALICE, "true")
        assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr
        session.wait(timeout=30)
        closed_after = time.monotonic() - removed_at
    finally:
        session.kill()
    said = session.stderr.read()  # the reason reaches the client unless the container hop closes first
    closed = ("was removed; connection closed", "closed by remote host", "send disconnect: Broken pipe")
    assert session.returncode == 255 and any(words in said for words in closed), said
    (container,) = containers_of(dclient, ALICE)
    assert keys_file_in(dclient, container["Id"]) == ""  # gone from the container at once too
    closed = [e for e in audit_events(hub, "ssh.gateway.closed") if e["user"] == ALICE]
    assert closed and closed[-1]["fingerprint"] == fingerprint(keys["alice"][1])

    def ends():  # every login has one end on record: closed by the gateway, or ended by the client
        accepted = [e for e in audit_events(hub, "ssh.gateway.auth") if e["user"] == ALICE
                    and e["decision"] == "accept"]
        ended = [e for e in audit_events(hub, "ssh.gateway.ended") if e["user"] == ALICE]
        closed = [e for e in audit_events(hub, "ssh.gateway.closed") if e["user"] == ALICE]
        return len(accepted), len(closed) + len(ended), ended
    balanced = until(lambda: (lambda n: n if n[0] == n[1] else None)(ends()), timeout=10)
    accepted, ended_or_closed, ended = balanced or ends()
    assert accepted == ended_or_closed, ended
    assert ended and all(e["seconds"] >= 0 and e["fingerprint"] for e in ended)  # the client's own ends
    print(f"open session closed {closed_after:.1f} s after the removal")
