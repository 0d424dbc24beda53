"""User certificates (ssh_user_certificates): the pure decisions, and a real certificate read back by
OpenSSH's own ``ssh-keygen -L``."""

import subprocess

import pytest

from hardened_spawner.decisions import user_certs
from hardened_spawner.decisions.user_certs import CertificateRefused, LifetimeRefused
from hardened_spawner.keys import host_certs
from hardened_spawner.keys import user_certs as signing
from hardened_spawner.keys.entries import KeyEntry
from hardened_spawner.keys.validation import DEFAULT_FORCED_OPTIONS

NOW = 1_800_000_000


def test_the_lifetime_is_capped_at_the_hubs_maximum():
    plan = user_certs.plan("alice", "", NOW, max_hours=8, hours=72)
    assert plan.valid_before == NOW + 8 * 3600 and plan.capped
    assert plan.valid_after == NOW - user_certs.CLOCK_SKEW
    shorter = user_certs.plan("alice", "", NOW, max_hours=8, hours=0.5)
    assert shorter.valid_before == NOW + 1800 and not shorter.capped
    assert user_certs.plan("alice", "", NOW, max_hours=8).valid_before == NOW + 8 * 3600


@pytest.mark.parametrize("hours", [0, -1, float("nan")])
def test_a_lifetime_that_is_not_positive_is_refused(hours):
    with pytest.raises(LifetimeRefused, match="more than 0 hours"):
        user_certs.plan("alice", "", NOW, max_hours=8, hours=hours)


def test_key_id_names_the_hub_user_and_server_and_the_principal_is_the_servers_name():
    plan = user_certs.plan("Alice", "GPU", NOW, max_hours=8)
    assert plan.key_id == "user=Alice server=GPU"
    assert plan.principals == ("alice.gpu",)  # ssh lower-cases host names, as for the host certificate
    assert user_certs.plan("alice", "", NOW, max_hours=8).key_id == "user=alice server=(default)"


@pytest.mark.parametrize("server", ['a"b', "a,b", "a b", "../x"])
def test_a_server_name_that_could_break_the_principals_option_is_refused(server):
    with pytest.raises(CertificateRefused, match="is not a server name"):
        user_certs.plan("alice", server, NOW, max_hours=8)


def test_the_containers_keys_file_trusts_each_ca_for_this_servers_name_only():
    text = user_certs.trusted_ca_lines(["ssh-ed25519 AAAA1", "ssh-ed25519 AAAA2"], "alice", "gpu",
                                       DEFAULT_FORCED_OPTIONS)
    assert text.splitlines() == [f'cert-authority,principals="alice.gpu",{DEFAULT_FORCED_OPTIONS} ssh-ed25519 AAAA{n}'
                                 for n in (1, 2)]


def entry(fingerprint):
    return KeyEntry(1, "ssh-ed25519", fingerprint, "", "", "", "ssh-ed25519 AAAA")


def test_the_key_to_certify_is_the_named_one_or_the_only_one():
    one, two = entry("SHA256:one"), entry("SHA256:two")
    assert user_certs.choose_key([one]) is one
    assert user_certs.choose_key([one, two], "SHA256:two") is two
    with pytest.raises(CertificateRefused, match=r"several keys registered: name the one to certify with \?key="):
        user_certs.choose_key([one, two])
    with pytest.raises(CertificateRefused, match="No usable registered key has the fingerprint SHA256:three"):
        user_certs.choose_key([one, two], "SHA256:three")
    with pytest.raises(CertificateRefused, match="no usable SSH key registered"):
        user_certs.choose_key([])


def test_a_signed_certificate_reads_back_in_ssh_keygen_as_planned(tmp_path):
    ca = host_certs.load_or_create_key(str(tmp_path / "ca"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True)
    plan = user_certs.plan("alice", "gpu", NOW, max_hours=8)
    serial, cert = signing.issue(ca, (tmp_path / "id.pub").read_text(), plan)
    (tmp_path / "id-cert.pub").write_text(cert)
    shown = subprocess.run(["ssh-keygen", "-L", "-f", str(tmp_path / "id-cert.pub")], capture_output=True,
                           text=True, check=True).stdout
    assert "Type: ssh-ed25519-cert-v01@openssh.com user certificate" in shown
    assert 'Key ID: "user=alice server=gpu"' in shown and f"Serial: {serial}" in shown
    assert shown.split("Principals:")[1].split("Critical Options:")[0].split() == ["alice.gpu"]
    assert shown.split("Extensions:")[1].split() == ["permit-port-forwarding", "permit-pty"]


@pytest.mark.parametrize("username", ["a,b", 'a"b', "a b", "a*", "a\tb", "a\\b"])
def test_a_user_name_the_principals_list_cannot_carry_gets_no_certificate_and_no_trusted_ca(username):
    with pytest.raises(CertificateRefused, match="cannot be named in an SSH certificate"):
        user_certs.plan(username, "", NOW, max_hours=8)
    assert user_certs.trusted_ca_lines(["ssh-ed25519 AAAA1"], username, "", DEFAULT_FORCED_OPTIONS) == ""
