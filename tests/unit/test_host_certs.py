"""The hub's host CA: certificates OpenSSH itself reads, for the names users type, made atomically."""

import subprocess
import time

import pytest

from hardened_spawner.keys import delivery, host_certs
from hardened_spawner.keys.sshlib import asyncssh


def test_a_host_certificate_is_for_the_servers_logical_name_and_valid_from_a_minute_ago(tmp_path):
    ca = host_certs.load_or_create_key(str(tmp_path / "ca"))
    now = time.time()
    issued = host_certs.issue_host_key(ca, "Alice", "GPU", now, 3600)
    assert issued.principals == ("alice.gpu",)
    cert_file = tmp_path / "ssh_host_ed25519_key-cert.pub"
    cert_file.write_text(issued.certificate)
    shown = subprocess.run(["ssh-keygen", "-L", "-f", str(cert_file)], capture_output=True, text=True,
                           check=True).stdout  # OpenSSH reads it
    assert "host certificate" in shown and "alice.gpu" in shown
    assert ca.get_fingerprint("sha256") in shown  # the signing CA
    cert = asyncssh.import_certificate(issued.certificate)
    cert.validate(2, "alice.gpu")  # CERT_TYPE_HOST
    with pytest.raises(ValueError, match="principal"):
        cert.validate(2, "bob")
    assert cert.signing_key.public_data == ca.public_data
    assert issued.valid_before == int(now + 3600)
    key = asyncssh.import_private_key(issued.private)
    assert key.get_fingerprint("sha256") == issued.fingerprint == cert.key.get_fingerprint("sha256")
    assert host_certs.host_principals("alice", "") == ("alice",)


def test_two_processes_creating_the_ca_at_once_share_one_key(tmp_path):
    path = str(tmp_path / "ca")
    first = host_certs.load_or_create_key(path)
    assert (tmp_path / "ca").stat().st_mode & 0o777 == 0o600
    assert host_certs.load_or_create_key(path).public_data == first.public_data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca", "ca.pub"]  # nothing left aside


def test_the_archive_carries_the_host_key_owned_by_the_sshd_user_and_the_certificate(tmp_path):
    import io
    import tarfile

    ca = host_certs.load_or_create_key(str(tmp_path / "ca"))
    issued = host_certs.issue_host_key(ca, "alice", "", time.time(), 60)
    archive = delivery.keys_archive("jovyan", "ssh-ed25519 AAAA\n", host_key=issued, host_owner=(1000, 100))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = {m.name: (m.type, oct(m.mode), m.uid, m.gid) for m in tar.getmembers()}
    assert members == {
        ".host": (tarfile.DIRTYPE, "0o755", 0, 0),
        ".host/ssh_host_ed25519_key": (tarfile.REGTYPE, "0o600", 1000, 100),
        ".host/ssh_host_ed25519_key-cert.pub": (tarfile.REGTYPE, "0o644", 0, 0),
        "jovyan": (tarfile.REGTYPE, "0o644", 0, 0),
    }
    assert f"{delivery.KEYS_DIR}/.host/ssh_host_ed25519_key" == host_certs.HOST_KEY_PATH


def test_accepted_ca_lines_must_be_public_keys():
    with pytest.raises(ValueError, match="not an OpenSSH public key"):
        host_certs.public_key_line("not a key")
    ca = asyncssh.generate_private_key("ssh-ed25519")
    line = ca.export_public_key("openssh").decode().strip()
    assert host_certs.public_key_line(line + " old-ca") == " ".join(line.split()[:2])
