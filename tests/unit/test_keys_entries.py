"""Users' own keys as entries: what the page lists, what a paste may add, add and remove. Pure."""

import asyncssh
import pytest

from hardened_spawner.keys.entries import (
    MAX_PASTE_BYTES, KeyRefused, add_line, check_new_key, list_entries, remove_fingerprint,
)
from hardened_spawner.keys.validation import KeyPolicy, check_keys

POLICY = KeyPolicy()


def public(key, comment=None):
    line = key.export_public_key("openssh").decode().strip()
    return line if comment is None else " ".join(line.split()[:2] + [comment])


@pytest.fixture(scope="module")
def keys():
    gen = asyncssh.generate_private_key
    made = {
        "ed": gen("ssh-ed25519", comment="alice@laptop"),
        "ed2": gen("ssh-ed25519"),
        "ecdsa": gen("ecdsa-sha2-nistp256"),
        "rsa1024": gen("ssh-rsa", key_size=1024),
        "rsa3072": gen("ssh-rsa", key_size=3072),
        "dsa": gen("ssh-dss"),
    }
    ca = gen("ssh-rsa", key_size=3072)
    made["cert"] = ca.generate_user_certificate(made["rsa3072"], "alice", principals=["alice"])
    assert made["cert"].export_certificate().startswith(b"ssh-rsa-cert-v01@openssh.com ")
    return made


def refusal(pasted, existing="", policy=POLICY):
    with pytest.raises(KeyRefused) as e:
        check_new_key(pasted, existing, policy)
    return str(e.value)


def test_a_good_key_is_stored_as_type_blob_comment(keys):
    line, accepted = check_new_key(public(keys["ed"]) + "\n", "", POLICY)
    assert line == public(keys["ed"])  # "ssh-ed25519 AAAA... alice@laptop"
    assert accepted.fingerprint == keys["ed"].get_fingerprint("sha256")
    assert accepted.key_type == "ssh-ed25519"
    line, _ = check_new_key(public(keys["ecdsa"], "work\tlaptop \x1b[31m").encode(), "", POLICY)
    assert line.split()[2:] == ["work", "laptop", "[31m"]  # control characters never stored


@pytest.mark.parametrize("make, words", [
    (lambda k: k["ed"].export_private_key("openssh").decode(), "That is a PRIVATE key"),
    (lambda k: k["rsa3072"].export_private_key("pkcs1-pem").decode(), "That is a PRIVATE key"),
    (lambda k: k["rsa1024"].export_public_key("openssh").decode(), "RSA key has 1024 bits; at least 3072"),
    (lambda k: 'command="/bin/sh",no-pty ' + public(k["ed"]), "starts with authorized_keys options"),
    (lambda k: 'from="10.0.0.0/8" ' + public(k["ed"]), "starts with authorized_keys options"),
    (lambda k: k["cert"].export_certificate().decode(), "Certificates are not accepted"),
    (lambda k: public(k["ed"]) + " " + "x" * 100_000, "bytes; a public key is one line of at most"),
    (lambda k: b"ssh-ed25519 \xff\xfe\x00 caf\xe9", "That is not UTF-8 text"),
    (lambda k: public(k["ed"]) + "\n" + public(k["ed2"]), "That is 2 lines; add one key at a time"),
    (lambda k: "   \n", "Paste a public key"),
    (lambda k: "ssh-ed25519 AAAAnotbase64!! x", "That is not an OpenSSH public key"),
    (lambda k: k["ed"].export_public_key("rfc4716").decode(), "PEM or RFC 4716 format"),
    (lambda k: public(k["dsa"]), "DSA (ssh-dss) keys are not accepted"),
])
def test_bad_pastes_are_refused_with_a_reason_that_never_echoes_the_key(keys, make, words):
    pasted = make(keys)
    message = refusal(pasted)
    assert words in message
    text = pasted.decode("latin-1") if isinstance(pasted, bytes) else pasted
    for chunk in [text[i:i + 24] for i in range(0, len(text) - 24, 24)]:
        assert chunk not in message  # no key material in what the page, the API or the audit log says


def test_a_100_kb_paste_is_refused_before_parsing_as_bytes_or_text():
    big = b"ssh-ed25519 " + b"A" * 100 * 1024
    assert "102412 bytes" in refusal(big) and str(MAX_PASTE_BYTES) in refusal(big)
    assert "102412 bytes" in refusal(big.decode())


def test_duplicates_and_the_key_limit(keys):
    text = add_line("", public(keys["ed"]), "2026-01-01T00:00:00Z")
    assert "already in the list" in refusal(public(keys["ed"], "other comment"), text)
    small = KeyPolicy(max_keys=1)
    assert "You have 1 keys, the most this hub allows" in refusal(public(keys["ed2"]), text, small)


def test_listing_shows_type_fingerprint_comment_date_and_why_a_key_is_unused(keys):
    text = add_line("", public(keys["ed"]), "2026-12-02T10:15:00Z")
    text += public(keys["rsa1024"], "old") + "\n"  # written by an admin's tooling: no date
    text += "# a comment line\n"
    text += 'restrict,command="x" ' + public(keys["ecdsa"], "ci") + "\n"
    text = add_line(text, "not a key at all", "2026-12-03T00:00:00Z")
    entries = list_entries(text, POLICY)
    assert [(e.key_type, e.comment, e.added, e.usable) for e in entries] == [
        ("ssh-ed25519", "alice@laptop", "2026-12-02T10:15:00Z", True),
        ("ssh-rsa", "old", "", False),
        ("ecdsa-sha2-nistp256", "ci", "", True),
        ("", "", "2026-12-03T00:00:00Z", False),
    ]
    assert entries[0].fingerprint == keys["ed"].get_fingerprint("sha256")
    assert "1024 bits" in entries[1].problem and entries[1].fingerprint.startswith("SHA256:")
    assert entries[2].public == " ".join(public(keys["ecdsa"]).split()[:2])
    assert entries[3].problem == "not a valid OpenSSH public key"


def test_add_then_remove_round_trip(keys):
    text = "ssh-ed25519 " + public(keys["ed2"]).split()[1]  # no trailing newline, no marker
    text = add_line(text, public(keys["ed"]), "2026-12-02T10:15:00Z")
    text = add_line(text, public(keys["ecdsa"]), "2026-12-02T10:16:00Z")
    assert [k.fingerprint for k in check_keys(text, POLICY).accepted] == [
        keys["ed2"].get_fingerprint("sha256"), keys["ed"].get_fingerprint("sha256"),
        keys["ecdsa"].get_fingerprint("sha256")]
    new, removed = remove_fingerprint(text, keys["ed"].get_fingerprint("sha256"))
    assert removed == 1 and "2026-12-02T10:15:00Z" not in new and "2026-12-02T10:16:00Z" in new
    assert [e.comment for e in list_entries(new, POLICY)] == ["", ""]
    assert remove_fingerprint(new, keys["ed"].get_fingerprint("sha256")) == (new, 0)
    # a line with options written by an admin is removed by its fingerprint too
    with_options = 'restrict,from="10.0.0.0/8" ' + public(keys["ed"]) + "\n"
    assert remove_fingerprint(with_options, keys["ed"].get_fingerprint("sha256")) == ("", 1)
