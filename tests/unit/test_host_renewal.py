"""Renewing a running server's host certificate: when, and only for this hub's CA and this server."""

import io
import subprocess
import tarfile
import time

import pytest

from hardened_spawner.decisions.host_renewal import RENEW_FRACTION, next_check, renewal_due
from hardened_spawner.keys import delivery, host_certs
from hardened_spawner.keys.sshlib import asyncssh

DAY = 86400


def test_a_certificate_is_due_once_less_than_a_third_of_its_lifetime_is_left():
    lifetime, now = 30 * DAY, 1_000_000_000
    assert RENEW_FRACTION == pytest.approx(1 / 3)
    assert not renewal_due(now + 30 * DAY, lifetime, now)  # just issued
    assert not renewal_due(now + 10 * DAY + 1, lifetime, now)
    assert renewal_due(now + 10 * DAY - 1, lifetime, now)
    assert renewal_due(now - 1, lifetime, now)  # expired: due too
    assert next_check(now + 30 * DAY, lifetime) == pytest.approx(now + 20 * DAY)
    assert not renewal_due(now + 100, 130, now) and renewal_due(now + 40, 130, now)  # minutes, as in the test


@pytest.fixture
def ca(tmp_path):
    key = host_certs.load_or_create_key(str(tmp_path / "ca"))
    return key, [host_certs.public_key_line(key.export_public_key().decode())]


def test_renewal_certifies_the_same_host_key_for_a_fresh_lifetime(tmp_path, ca):
    key, lines = ca
    issued = host_certs.issue_host_key(key, "alice", "gpu", time.time() - 100, 130)
    now = time.time()
    certificate, valid_before = host_certs.renew_host_certificate(key, lines, issued.certificate, "alice", "gpu",
                                                                  now, 130)
    assert valid_before == int(now + 130) > issued.valid_before
    old, new = asyncssh.import_certificate(issued.certificate), asyncssh.import_certificate(certificate)
    assert new.key.public_data == old.key.public_data  # the private key in the container still matches
    new.validate(2, "alice.gpu")
    assert new.signing_key.public_data == key.public_data
    (tmp_path / "cert.pub").write_text(certificate)
    shown = subprocess.run(["ssh-keygen", "-L", "-f", str(tmp_path / "cert.pub")], capture_output=True, text=True,
                           check=True).stdout  # OpenSSH reads it
    assert "host certificate" in shown and "hardened-spawner alice.gpu" in shown


def test_a_certificate_of_another_ca_another_server_or_expired_is_not_renewed(tmp_path, ca):
    key, lines = ca
    other = host_certs.load_or_create_key(str(tmp_path / "other"))
    now = time.time()
    foreign = host_certs.issue_host_key(other, "alice", "", now, 600).certificate
    with pytest.raises(ValueError, match="not signed by this hub's host CA"):
        host_certs.renew_host_certificate(key, lines, foreign, "alice", "", now, 600)
    bobs = host_certs.issue_host_key(key, "bob", "", now, 600).certificate
    with pytest.raises(ValueError, match="is for bob, not for alice"):
        host_certs.renew_host_certificate(key, lines, bobs, "alice", "", now, 600)
    expired = host_certs.issue_host_key(key, "alice", "", now - 7200, 3600).certificate
    with pytest.raises(ValueError, match="expired.*restart the server"):
        host_certs.renew_host_certificate(key, lines, expired, "alice", "", now, 600)
    user_cert = key.generate_user_certificate(asyncssh.generate_private_key("ssh-ed25519"), "x",
                                              principals=["alice"]).export_certificate().decode()
    with pytest.raises(ValueError, match="not a valid host certificate"):
        host_certs.renew_host_certificate(key, lines, user_cert, "alice", "", now, 600)
    with pytest.raises(ValueError, match="cannot be read"):
        host_certs.renew_host_certificate(key, lines, "ssh-ed25519-cert-v01@openssh.com AAAA", "alice", "", now, 600)


def test_the_renewal_archive_holds_only_the_certificate_root_owned():
    with tarfile.open(fileobj=io.BytesIO(delivery.host_cert_archive("CERT\n", mtime=1))) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.mode, member.uid, member.gid) == (".host/ssh_host_ed25519_key-cert.pub",
                                                                      0o644, 0, 0)
        assert tar.extractfile(member).read() == b"CERT\n"
