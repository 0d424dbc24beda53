"""Renewing a running server's host certificate: when, and only for this hub's CA and this server."""

import io
import logging
import subprocess
import tarfile
import time
from types import SimpleNamespace

import pytest

from hardened_spawner.decisions.host_renewal import RENEW_FRACTION, RETRY_AFTER, look_now, renewal_due, retry_at
from hardened_spawner.keys import delivery, host_certs
from hardened_spawner.keys.live import LiveDeliveryError
from hardened_spawner.spawner.host_renewal import HostCertRenewal
from hardened_spawner.keys.sshlib import asyncssh

DAY = 86400


def test_a_certificate_is_due_once_less_than_a_third_of_its_lifetime_is_left():
    lifetime, now = 30 * DAY, 1_000_000_000
    assert RENEW_FRACTION == pytest.approx(1 / 3)
    assert not renewal_due(now + 30 * DAY, lifetime, now)  # just issued
    assert not renewal_due(now + 10 * DAY + 1, lifetime, now)
    assert renewal_due(now + 10 * DAY - 1, lifetime, now)
    assert renewal_due(now - 1, lifetime, now)  # expired: due too
    assert not renewal_due(now + 100, 130, now) and renewal_due(now + 40, 130, now)  # minutes, as in the test


def test_a_poll_reads_the_container_only_when_the_end_is_unknown_or_near():
    lifetime, now = 30 * DAY, 1_000_000_000
    assert look_now(None, lifetime, now)  # the first poll after a hub restart
    assert not look_now(now + 20 * DAY, lifetime, now)  # known and far: no I/O
    assert look_now(now + 5 * DAY, lifetime, now)
    assert not look_now(now + 5 * DAY, lifetime, now, retry_at=now + 1)  # a failure waits
    assert look_now(now + 5 * DAY, lifetime, now + 1, retry_at=now + 1)
    assert retry_at(lifetime, now) == now + RETRY_AFTER
    assert retry_at(120, now) == pytest.approx(now + 10)  # a few tries fit in a short renewal window


@pytest.fixture
def ca(tmp_path):
    key = host_certs.load_or_create_key(str(tmp_path / "ca"))
    return key, [host_certs.public_key_line(key.export_public_key().decode())]


def test_renewal_certifies_the_same_host_key_for_a_fresh_lifetime(tmp_path, ca):
    key, lines = ca
    issued = host_certs.issue_host_key(key, "alice", "gpu", time.time() - 100, 130)
    now = time.time()
    held = host_certs.renewable_certificate(lines, issued.certificate, "alice", "gpu")
    assert held.valid_before == issued.valid_before
    certificate, valid_before = host_certs.renew_host_certificate(key, held.key, "alice", "gpu", now, 130)
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
        host_certs.renewable_certificate(lines, foreign, "alice", "")
    bobs = host_certs.issue_host_key(key, "bob", "", now, 600).certificate
    with pytest.raises(ValueError, match="is for bob, not for alice"):
        host_certs.renewable_certificate(lines, bobs, "alice", "")
    expired = host_certs.issue_host_key(key, "alice", "", now - 7200, 3600).certificate
    with pytest.raises(ValueError, match="expired.*restart the server"):
        host_certs.renewable_certificate(lines, expired, "alice", "")
    user_cert = key.generate_user_certificate(asyncssh.generate_private_key("ssh-ed25519"), "x",
                                              principals=["alice"]).export_certificate().decode()
    with pytest.raises(ValueError, match="not a valid host certificate"):
        host_certs.renewable_certificate(lines, user_cert, "alice", "")
    with pytest.raises(ValueError, match="cannot be read"):
        host_certs.renewable_certificate(lines, "ssh-ed25519-cert-v01@openssh.com AAAA", "alice", "")


def test_the_renewal_archive_holds_only_the_certificate_root_owned():
    with tarfile.open(fileobj=io.BytesIO(delivery.host_cert_archive("CERT\n", mtime=1))) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.mode, member.uid, member.gid) == (".host/ssh_host_ed25519_key-cert.pub",
                                                                      0o644, 0, 0)
        assert tar.extractfile(member).read() == b"CERT\n"


def test_during_a_ca_rotation_a_certificate_of_the_old_ca_is_renewed_by_the_new_one(tmp_path, ca):
    new_ca, new_lines = ca
    old_ca = host_certs.load_or_create_key(str(tmp_path / "old-ca"))
    old_line = host_certs.public_key_line(old_ca.export_public_key().decode())
    issued = host_certs.issue_host_key(old_ca, "alice", "", time.time(), 600)
    with pytest.raises(ValueError, match="not signed by this hub's host CA"):
        host_certs.renewable_certificate(new_lines, issued.certificate, "alice", "")  # the old CA not accepted
    held = host_certs.renewable_certificate([*new_lines, old_line], issued.certificate, "alice", "")
    certificate, _ = host_certs.renew_host_certificate(new_ca, held.key, "alice", "", time.time(), 600)
    assert asyncssh.import_certificate(certificate).signing_key.public_data == new_ca.public_data


def test_the_held_certificates_end_is_the_one_openssh_shows(tmp_path, ca):
    key, lines = ca
    issued = host_certs.issue_host_key(key, "alice", "gpu", time.time(), 600)
    held = host_certs.renewable_certificate(lines, issued.certificate, "alice", "gpu")
    assert held.valid_before == issued.valid_before
    (tmp_path / "cert.pub").write_text(issued.certificate)
    shown = subprocess.run(["ssh-keygen", "-L", "-f", str(tmp_path / "cert.pub")], capture_output=True, text=True,
                           check=True, env={"TZ": "UTC"}).stdout
    assert time.strftime("to %Y-%m-%dT%H:%M:%S", time.gmtime(issued.valid_before)) in shown
    rsa = asyncssh.generate_private_key("ssh-rsa", key_size=3072)
    rsa_cert = key.generate_host_certificate(rsa, "x", principals=["alice.gpu"]).export_certificate().decode()
    with pytest.raises(ValueError, match="not an OpenSSH ed25519 host certificate"):
        host_certs.renewable_certificate(lines, rsa_cert, "alice", "gpu")


async def test_a_renewal_that_fails_is_audited_with_the_reason_and_tried_again_later():
    """The failure reaches the audit log (an admin alerts on it), not only the hub log."""
    events = []

    async def run(*args):
        raise LiveDeliveryError("the container went away mid-renewal")

    spawner = SimpleNamespace(
        ssh_host_certificate_days=30, container_id="c" * 64, name="", user=SimpleNamespace(name="alice"),
        docker_io=SimpleNamespace(run=run, client=None), log=logging.getLogger("test"), _log_name="alice",
        audit=SimpleNamespace(write=lambda event, **fields: events.append({"event": event, **fields})),
        audit_fields=lambda **fields: {"user": "alice", "server": "", **fields})
    renewal = HostCertRenewal()  # a restarted hub: the end is unknown, so the first poll reads it
    before = time.time()
    await renewal.poll(spawner)
    (event,) = events
    assert event == {"event": "ssh.host-certificate-not-renewed", "user": "alice", "server": "",
                     "container": "c" * 12, "reason": "the container went away mid-renewal",
                     "valid_before": None, "retry_at": event["retry_at"]}
    assert before + RETRY_AFTER - 1 <= event["retry_at"] <= time.time() + RETRY_AFTER
    await renewal.poll(spawner)  # before retry_at: no second try, no second line
    assert len(events) == 1
