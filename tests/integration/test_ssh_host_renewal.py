"""A server that runs longer than its host certificate: the hub renews it, ssh with strict checking still works.

Real hub (restarted in between, as an upgrade would), gateway, OpenSSH
client with only the ``@cert-authority`` line, and container, with
certificates valid for two minutes and a poll every five seconds; on a
normal root filesystem (``put_archive`` into the container) and on a
read-only one (the keys volume, written through a helper container).
"""

import calendar
import subprocess
import time

import pytest
from sshrig import Client, audit_events, container_ip, containers_of, keygen, module_hub, wait_for_sshd, wait_port
from sshrig import write_keys

from hardened_spawner.keys.sshlib import asyncssh

pytestmark = [pytest.mark.docker, pytest.mark.hub]

LIFETIME = 120  # seconds a host certificate is valid: renewed with 40 s left
CONFIG = f"""
c.HardenedDockerSpawner.ssh_host_certificate_days = {LIFETIME} / 86400
c.Spawner.poll_interval = 5
c.JupyterHub.cleanup_servers = False  # servers outlive the hub's restart, as in production
"""


def presented(dclient, user):
    """The host certificate the container's sshd presents now (read with OpenSSH's ssh-keyscan)."""
    r = subprocess.run(["ssh-keyscan", "-c", "-T", "10", "-p", "2222", container_ip(dclient, user)],
                       capture_output=True, text=True, timeout=30)
    (line,) = [line for line in r.stdout.splitlines() if line.startswith("ssh-ed25519-cert-v01@openssh.com ")]
    return asyncssh.import_certificate(line)  # -c prints the certificate alone, with no host name


def valid_before(cert):
    """The end of ``cert``'s validity, as ``ssh-keygen -L`` shows it (UTC)."""
    shown = subprocess.run(["ssh-keygen", "-L", "-f", "-"], input=cert.export_certificate().decode(),
                           capture_output=True, text=True, check=True, env={"TZ": "UTC"}).stdout
    (valid,) = [line for line in shown.splitlines() if line.strip().startswith("Valid:")]
    return calendar.timegm(time.strptime(valid.split(" to ")[1].strip(), "%Y-%m-%dT%H:%M:%S"))


@pytest.mark.parametrize("read_only_root", [False, True], ids=["put-archive", "keys-volume"])
def test_strict_ssh_still_works_after_the_first_host_certificate_expired(tmp_path, dclient, image, read_only_root):
    user = "ssh-renew-ro" if read_only_root else "ssh-renew"
    env = {"HS_READ_ONLY_ROOT": "1" if read_only_root else "0"}  # put-archive: the writable root, set explicitly
    key, public = keygen(tmp_path, "key")
    with module_hub(tmp_path / "hub", dclient, CONFIG, env=env) as hub:
        write_keys(hub.state / "ssh-keys", user, [public])
        hub.spawn_and_wait(user)
        client = Client(hub, user, key, tmp_path)
        r = wait_for_sshd(client, user)
        assert r.returncode == 0, r.stderr
        (container,) = containers_of(dclient, user)
        assert dclient.inspect_container(container["Id"])["HostConfig"]["ReadonlyRootfs"] is read_only_root
        first = presented(dclient, user)
        first_end = valid_before(first)
        assert first_end - time.time() <= LIFETIME

        hub.stop()  # the restarted hub knows nothing of the certificate: it reads it back from the container
        hub.start()
        wait_port(int(hub.env["HS_SSH_GATEWAY_PORT"]))
        assert audit_events(hub, "ssh.host-certificate-renewed") == []  # not due yet: nothing renewed

        time.sleep(max(0.0, first_end + 3 - time.time()))
        r = client.ssh(user, "true")
        assert r.returncode == 0, f"strict ssh after the first certificate's end: {r.stderr}"
        now = presented(dclient, user)
        assert valid_before(now) > first_end
        assert now.key.public_data == first.key.public_data  # the same host key, newly certified

        renewed = [e for e in audit_events(hub, "ssh.host-certificate-renewed") if e["user"] == user]
        assert len(renewed) == 1, renewed  # once, when due: not at every poll
        assert renewed[0]["valid_before"] == valid_before(now)
        assert renewed[0]["fingerprint"] == first.key.get_fingerprint("sha256")
        assert renewed[0]["container"] == container["Id"][:12]
