"""Key validation: what is accepted, what is rejected and why, and what is delivered."""

import base64
import os
import struct

import asyncssh
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardened_spawner.keys.validation import (
    DEFAULT_FORCED_OPTIONS, DEFAULT_KEY_TYPES, KeyPolicy, check_keys, forced_options_problems, parse_options, policy_problems,
    render_authorized_keys, split_options,
)

POLICY = KeyPolicy()


def public(key):
    return key.export_public_key("openssh").decode().strip()


@pytest.fixture(scope="module")
def keys():
    gen = asyncssh.generate_private_key
    return {
        "ed25519": gen("ssh-ed25519", comment="alice@laptop"),
        "ecdsa": gen("ecdsa-sha2-nistp256"),
        "rsa3072": gen("ssh-rsa", key_size=3072),
        "rsa2048": gen("ssh-rsa", key_size=2048),
        "rsa1024": gen("ssh-rsa", key_size=1024),
        "dsa": gen("ssh-dss"),
    }


def sk_ed25519_line():
    """A FIDO (sk-ssh-ed25519) public key; its blob is type, 32-byte key, application."""
    def s(b):
        return struct.pack(">I", len(b)) + b
    blob = s(b"sk-ssh-ed25519@openssh.com") + s(os.urandom(32)) + s(b"ssh:")
    return "sk-ssh-ed25519@openssh.com " + base64.b64encode(blob).decode() + " yubikey"


def test_modern_keys_are_accepted_with_fingerprints(keys):
    text = "\n".join([public(keys["ed25519"]), public(keys["ecdsa"]), public(keys["rsa3072"]), sk_ed25519_line()])
    check = check_keys(text, POLICY)
    assert check.rejected == ()
    assert [k.key_type for k in check.accepted] == [
        "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa", "sk-ssh-ed25519@openssh.com"]
    assert check.accepted[0].fingerprint == keys["ed25519"].get_fingerprint("sha256")
    assert check.accepted[2].bits == 3072
    assert all(f.startswith("SHA256:") for f in check.fingerprints)


@pytest.mark.parametrize("name, reason", [
    ("dsa", "DSA (ssh-dss) keys are not accepted"),
    ("rsa1024", "RSA key has 1024 bits; at least 3072 are required"),
    ("rsa2048", "RSA key has 2048 bits; at least 3072 are required"),
])
def test_weak_keys_are_rejected_with_the_reason(keys, name, reason):
    check = check_keys(public(keys[name]), POLICY)
    assert check.accepted == ()
    (rejected,) = check.rejected
    assert rejected.line == 1 and reason in rejected.reason
    assert rejected.fingerprint == keys[name].get_fingerprint("sha256")


def test_malformed_lines_and_duplicates_are_rejected_per_line(keys):
    ed = public(keys["ed25519"])
    text = "\n".join([
        "# a comment", "", ed, "ssh-ed25519 AAAAnot-base64", "hello world",
        'from="10.0.0.1" ' + ed.replace("alice@laptop", "other comment"),
    ])
    check = check_keys(text, POLICY)
    assert [k.line for k in check.accepted] == [3]
    assert [(r.line, r.reason) for r in check.rejected] == [
        (4, "not a valid OpenSSH public key"),
        (5, "not a valid OpenSSH public key"),
        (6, "duplicate of the key on line 3"),
    ]


def test_user_options_and_comments_are_replaced_by_the_forced_set(keys):
    ed = public(keys["ed25519"])
    line = 'command="/bin/evil",permitopen="*:*",environment="LD_PRELOAD=/x" ' + ed
    check = check_keys(line, POLICY)
    out = render_authorized_keys(check, "restrict,pty")
    key_type, blob = ed.split()[:2]
    assert out == f"restrict,pty {key_type} {blob}\n"
    assert "alice@laptop" not in out and "evil" not in out
    # what is delivered parses back to the same key, with the forced options
    parsed = asyncssh.import_authorized_keys(out)
    assert parsed.validate(keys["ed25519"].convert_to_public(), "", "") == {"restrict": True, "pty": True}


def test_a_key_type_the_admin_left_out_is_rejected(keys):
    check = check_keys(public(keys["ecdsa"]), KeyPolicy(key_types=("ssh-ed25519",)))
    assert "ecdsa-sha2-nistp256 keys are not accepted on this hub" in check.rejected[0].reason


def test_certificates_are_rejected(keys):
    ca = asyncssh.generate_private_key("ssh-ed25519")
    cert = ca.generate_user_certificate(keys["ed25519"], "alice")
    check = check_keys(cert.export_certificate("openssh").decode(), POLICY)
    assert "certificates are not accepted" in check.rejected[0].reason


def test_too_many_keys(keys):
    ed, ec = public(keys["ed25519"]), public(keys["ecdsa"])
    check = check_keys(f"{ed}\n{ec}\n", KeyPolicy(max_keys=1))
    assert len(check.accepted) == 1 and "more than 1 keys" in check.rejected[0].reason


def test_rejections_never_carry_the_key_text(keys):
    dsa = public(keys["dsa"])
    check = check_keys(dsa + "\ngarbage-" + dsa.split()[1], POLICY)
    audit = repr(check.as_audit()) + repr([r.describe() for r in check.rejected])
    assert dsa.split()[1][:40] not in audit


@given(st.text(max_size=300))
def test_check_keys_never_raises_and_accounts_for_every_line(text):
    check = check_keys(text, POLICY)
    significant = [n for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.strip().startswith("#")]
    assert sorted([k.line for k in check.accepted] + [r.line for r in check.rejected]) == significant


option_name = st.sampled_from(["restrict", "pty", "no-pty", "from", "command", "expiry-time", "x"])
option_value = st.text(alphabet=st.characters(blacklist_characters='"\\\n', blacklist_categories=("Cs",)), max_size=12)


@given(st.lists(st.tuples(option_name, st.none() | option_value), min_size=1, max_size=5))
def test_parse_options_round_trips(options):
    text = ",".join(name if value is None else f'{name}="{value}"' for name, value in options)
    assert parse_options(text) == [name for name, _ in options]
    # the options field ends at the first space outside quotes, as in sshd
    assert split_options(text + " ssh-ed25519 AAAA c") == (text, "ssh-ed25519 AAAA c")


@pytest.mark.parametrize("text", ["", "restrict,", ",pty", 'from=10.0.0.1', 'from="x', "res trict", 'a="x"b'])
def test_parse_options_refuses_malformed_lists(text):
    with pytest.raises(ValueError):
        parse_options(text)


def test_forced_options_must_restrict_and_not_widen():
    assert forced_options_problems("restrict,pty") == []
    assert forced_options_problems('restrict,pty,from="10.0.0.0/8",command="/bin/true"') == []
    assert "must include 'restrict'" in forced_options_problems("pty")[0]
    assert "would give back" in forced_options_problems("restrict,port-forwarding")[0]
    assert "reaches beyond the container" in forced_options_problems('restrict,permitopen="*:*"')[0]


def test_forwarding_is_forced_only_to_the_containers_own_loopback():
    assert forced_options_problems(DEFAULT_FORCED_OPTIONS) == []
    assert forced_options_problems('restrict,port-forwarding,permitopen="[::1]:8888"') == []
    for where in ("10.0.0.1:22", "*:*", "localhost.example.org:22", "hub:8081"):
        problems = forced_options_problems(f'restrict,port-forwarding,permitopen="{where}"')
        assert problems and "reaches beyond the container" in problems[0], where
    assert "without permitopen" in forced_options_problems("restrict,port-forwarding")[0]
    for widening in ('permitlisten="0.0.0.0:80"', "agent-forwarding", "x11-forwarding", "tunnel=\"0\""):
        assert "would give back" in " ".join(forced_options_problems(f"restrict,{widening}")), widening
    assert "not an option this hub knows" in forced_options_problems("restrict,bogus")[0]
    assert "not a valid" in forced_options_problems("restrict,,pty")[0]


def test_policy_problems():
    assert policy_problems(KeyPolicy()) == []
    problems = dict(policy_problems(KeyPolicy(key_types=("ssh-dss", "ssh-foo"), min_rsa_bits=2048, max_keys=0)))
    assert set(problems) == {"key_types", "min_rsa_bits", "max_keys"}
    assert "never accepted" in [m for f, m in policy_problems(KeyPolicy(key_types=("ssh-dss",)))][0]
    assert "ssh-ed25519" in DEFAULT_KEY_TYPES


def test_importing_the_ssh_parts_prints_no_dsa_warnings_and_silences_nothing_else():
    """asyncssh's import printed five 'DSA is deprecated' warnings at the top of the hub's log."""
    import subprocess
    import sys

    code = ("import warnings\n"
            "import hardened_spawner.keys.validation, hardened_spawner.ssh.gateway, hardened_spawner.ssh.service\n"
            "from cryptography.utils import CryptographyDeprecationWarning\n"
            "warnings.warn('DSA is deprecated (raised after the import)', CryptographyDeprecationWarning)\n"
            "warnings.warn('another warning', UserWarning)\n")
    r = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("DSA is deprecated") == 1 and "raised after the import" in r.stderr, r.stderr
    assert "another warning" in r.stderr
