"""Issuing SSH user certificates (``ssh_user_certificates``) in the SSH keys service.

A certificate is issued for one of the user's registered, usable keys, for
one of their servers, only after the hub says the user may still log in
(the access API, :mod:`...pages.access`: blocked, withdrawn by the identity
provider or by the configuration). Asking also tells the hub's authenticator
that the user is using SSH, so its background re-checks include them. Every
issue and every refusal is audited (``ssh.certificate``) with the Key ID,
the key's fingerprint and the certificate's serial and validity.
"""

import time

from ..decisions import user_certs
from ..decisions.user_certs import CertificateRefused
from ..keys import user_certs as signing
from ..keys.stores import KeyStoreError


class CertificateWithheld(CertificateRefused):
    """The hub no longer lets the user in: no certificate (HTTP 403)."""


class CertificateIssuer:
    """``ring`` is the service's :class:`.keyring.KeyRing`; ``ca()`` returns the CA's private key."""

    def __init__(self, ring, ca, max_hours, audit):
        self.ring, self.ca, self.max_hours, self.audit = ring, ca, max_hours, audit

    async def issue(self, username, server_name, fingerprint, hours, actor):
        """``(CertificatePlan, certificate line)``; raises :class:`CertificateRefused` with the reason."""
        fields = {"user": username, "server": server_name, "actor": actor}
        try:
            plan = user_certs.plan(username, server_name, time.time(), self.max_hours, hours)
            allowed, reason = await self.ring.hub.access(username)
            if not allowed:
                raise CertificateWithheld(f"No SSH certificate for {username}: {reason}. "
                                          "Ask the hub admin if you think this is wrong.")
            listing = await self.ring.listing(username)
            if listing.problem:
                raise KeyStoreError(self.ring.store.describe(), listing.problem)
            usable = [e for _, _, entries in listing.sources for e in entries if e.usable]
            key = user_certs.choose_key(usable, fingerprint)
        except CertificateRefused as e:
            self.audit.write("ssh.certificate", **fields, decision="refused", reason=str(e))
            raise
        serial, certificate = signing.issue(self.ca(), key.public, plan)
        self.audit.write("ssh.certificate", **fields, decision="issued", fingerprint=key.fingerprint,
                         serial=serial, **plan.as_audit())
        return plan, certificate
