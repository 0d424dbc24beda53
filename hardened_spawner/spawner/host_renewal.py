"""Renewing the host certificate of a running server (a thin shell over :mod:`..decisions.host_renewal`).

At each of JupyterHub's polls of a running server the spawner asks
:meth:`HostCertRenewal.poll`; it acts only when the certificate it remembers
is due (:func:`~..decisions.host_renewal.renewal_due`), so a poll normally
reads nothing. Then it reads the certificate back from the container (so a
hub restart loses nothing: a hub that does not know it reads it at its first
poll), checks it is this hub's CA's for this server's names, signs the same
host key for a fresh ``ssh_host_certificate_days`` and writes only the new
certificate file (:func:`~..keys.live.renew_host_certificate`). The
container's entrypoint sees the file change and makes sshd reload it.
Swarm servers are not renewed: their keys are secrets that cannot change.
"""

import time

from docker.errors import DockerException

from ..decisions.host_renewal import renewal_due
from ..keys import host_certs
from ..keys.live import LiveDeliveryError, renew_host_certificate

RETRY_AFTER = 300  # seconds before a renewal that failed is tried again


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
        if self.off or now < self.retry_at or not spawner.container_id:
            return
        if self.valid_before is not None and not renewal_due(self.valid_before, lifetime, now):
            return

        def renew(current):
            return host_certs.renew_host_certificate(
                spawner.ssh_host_ca(), spawner.ssh_host_ca_lines(), current, spawner.user.name,
                spawner.name or "", time.time(), lifetime)

        try:
            valid_before = await spawner.docker_io.run(
                renew_host_certificate, spawner.docker_io.client, spawner.container_id, spawner.user.name, renew)
        except (LiveDeliveryError, ValueError, DockerException) as e:
            self.retry_at = now + RETRY_AFTER
            spawner.log.warning("%s: host certificate not renewed: %s", spawner._log_name, e)
            return
        if valid_before is None:  # no certificate in the container: it runs without SSH
            self.off = True
            return
        self.valid_before = valid_before
        spawner.log.info("%s: host certificate renewed until %s", spawner._log_name,
                         time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(valid_before)))
        spawner.audit.write("ssh.host-certificate-renewed", **spawner.audit_fields(
            container=spawner.container_id[:12], valid_before=valid_before))
