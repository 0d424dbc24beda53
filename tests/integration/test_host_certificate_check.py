"""The gateway's host certificate check against the real OpenSSH sshd (no container, no hub).

sshd runs unprivileged (as nobody) on a loopback port with the image's own
host key options; the check must accept exactly what OpenSSH's client accepts
with one ``@cert-authority`` line, say why it refuses anything else, and never
attempt a login (the sshd log has no user name in it).
"""

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from hardened_spawner.keys import host_certs
from hubrig import free_port
from sshrig import wait_port

pytestmark = []  # neither the Docker daemon nor a hub: the host's own sshd, started here

NOBODY = 65534


@contextlib.contextmanager
def sshd(host_key, certificate=None):
    """The host's sshd serving ``host_key`` (and ``certificate``) on a free loopback port, as nobody
    (in a directory of its own under /tmp: pytest's are not open to other users)."""
    directory = Path(tempfile.mkdtemp(prefix="hs-sshd-"))
    (directory / "host").write_text(host_key)
    args = ["-h", str(directory / "host")]
    if certificate is not None:
        (directory / "host-cert.pub").write_text(certificate)
        args += ["-o", f"HostCertificate={directory / 'host-cert.pub'}"]
    port = free_port()
    (directory / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nPidFile none\nUsePAM no\nLogLevel VERBOSE\n"
        "HostKeyAlgorithms ssh-ed25519-cert-v01@openssh.com,ssh-ed25519\n")
    for path in [directory, *directory.iterdir()]:
        os.chown(path, NOBODY, NOBODY)
    (directory / "host").chmod(0o600)
    log = directory / "sshd.log"
    process = subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "/usr/sbin/sshd", "-D", "-e",
         "-f", str(directory / "sshd_config"), *args], stderr=log.open("w"))
    try:
        wait_port(port, timeout=15)
        yield port, log
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(directory)


def check(port, name, ca_lines):
    asyncio.run(host_certs.check_host_certificate("127.0.0.1", port, name, ca_lines))


@pytest.fixture
def ca(tmp_path):
    key = host_certs.load_or_create_key(str(tmp_path / "ca"))
    return key, [host_certs.public_key_line(key.export_public_key().decode())]


def test_a_certificate_for_the_name_from_the_ca_is_accepted_without_a_login(tmp_path, ca):
    key, lines = ca
    issued = host_certs.issue_host_key(key, "alice", "gpu", time.time(), 600)
    with sshd(issued.private, issued.certificate) as (port, log):
        check(port, "alice.gpu", lines)
        with pytest.raises(host_certs.HostKeyRefused, match="Certificate principal mismatch"):
            check(port, "alice", lines)  # another of alice's names
        with pytest.raises(host_certs.HostKeyRefused, match="Host CA key is not trusted"):
            check(port, "alice.gpu", [host_certs.public_key_line(
                host_certs.load_or_create_key(str(tmp_path / "other-ca")).export_public_key().decode())])
        check(port, "alice.gpu", ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFVf4ZUdbS2Ssab6cPyg2eXMQ6uHF8dD5CuC8A4OFo8Y",
                                  *lines])  # rotation: any accepted CA
        sshd_log = log.read_text()
    assert "Connection from 127.0.0.1" in sshd_log and "user" not in sshd_log.lower()  # no login was tried


def test_a_plain_host_key_an_expired_certificate_or_no_sshd_is_refused(tmp_path, ca):
    key, lines = ca
    plain = host_certs.issue_host_key(key, "alice", "", time.time(), 600)
    with sshd(plain.private) as (port, _):
        with pytest.raises(host_certs.HostKeyRefused, match="Host key is not trusted"):
            check(port, "alice", lines)
    expired = host_certs.issue_host_key(key, "alice", "", time.time() - 7200, 3600)
    with sshd(expired.private, expired.certificate) as (port, _):
        with pytest.raises(host_certs.HostKeyRefused, match="expired"):
            check(port, "alice", lines)
    with pytest.raises(host_certs.HostKeyRefused, match="does not answer"):
        check(free_port(), "alice", lines)
