"""Renewing the host certificate of a running server (a thin shell over :mod:`..decisions.host_renewal`).

At each of JupyterHub's polls of a running server the spawner asks
:meth:`HostCertRenewal.poll`; it reads the container only when
:func:`~..decisions.host_renewal.look_now` says so, so a poll normally does
no I/O. Then it reads the certificate back from the container (a hub that
restarted knows nothing and learns the end at its first poll), checks it is
one this hub may renew (:func:`~..keys.host_certs.renewable_certificate`),
and when it is due signs the same host key for a fresh
``ssh_host_certificate_days`` and replaces only the certificate file
(:func:`~..keys.live.renew_host_certificate`), audited as
``ssh.host-certificate-renewed`` (a failure as ``ssh.host-certificate-not-renewed``, tried
again at ``retry_at``). sshd reads the file again for every new
connection (it re-executes itself per connection): no reload is needed. Swarm servers are not renewed: their keys
are secrets that cannot change.
"""

import time

from docker.errors import DockerException

from ..decisions.host_renewal import look_now, renewal_due, retry_at
from ..keys import host_certs
from ..keys.live import LiveDeliveryError, renew_host_certificate


class HostCertRenewal:
    """What one spawner knows of its server's host certificate: when it ends (None: unknown, read it
    at the next poll) or that the server has none (``off``: no SSH)."""

    def __init__(self):
        self.valid_before = None
        self.off = False
        self.retry_at = 0.0

    def started(self, host_key):
        """A start delivered ``host_key`` (:class:`~..keys.host_certs.HostKey`, or None: no sshd)."""
        self.valid_before = host_key.valid_before if host_key is not None else None
        self.off = host_key is None
        self.retry_at = 0.0

    async def poll(self, spawner):
        """Renew ``spawner``'s certificate when it is due; a failure is logged and tried again later."""
        lifetime = spawner.ssh_host_certificate_days * 86400
        now = time.time()
        if self.off or not spawner.container_id or not look_now(self.valid_before, lifetime, now, self.retry_at):
            return
        username, server_name = spawner.user.name, spawner.name or ""
        fingerprint = ""

        def renew(current):
            nonlocal fingerprint
            held = host_certs.renewable_certificate(spawner.ssh_host_ca_lines(), current, username, server_name)
            if not renewal_due(held.valid_before, lifetime, time.time()):
                return None, held.valid_before
            fingerprint = held.key.get_fingerprint("sha256")
            return host_certs.renew_host_certificate(spawner.ssh_host_ca(), held.key, username, server_name,
                                                     time.time(), lifetime)

        try:
            result = await spawner.docker_io.run(
                renew_host_certificate, spawner.docker_io.client, spawner.container_id, username, renew)
        except (LiveDeliveryError, ValueError, DockerException) as e:
            self.retry_at = retry_at(lifetime, now)
            spawner.log.warning("%s: host certificate not renewed: %s", spawner._log_name, e)
            spawner.audit.write("ssh.host-certificate-not-renewed", **spawner.audit_fields(
                container=spawner.container_id[:12], reason=str(e), valid_before=self.valid_before,
                retry_at=int(self.retry_at)))
            return
        if result is None:  # no certificate in the container: it runs without SSH
            self.off = True
            return
        renewed, self.valid_before = result
        if renewed:
            spawner.log.info("%s: host certificate renewed until %s", spawner._log_name,
                             time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.valid_before)))
            spawner.audit.write("ssh.host-certificate-renewed", **spawner.audit_fields(
                container=spawner.container_id[:12], fingerprint=fingerprint, valid_before=self.valid_before))
