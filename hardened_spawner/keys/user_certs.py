"""Signing SSH user certificates (``ssh_user_certificates``) with the hub's CA, through asyncssh.

What a certificate says (Key ID, principal, validity) is decided in
:mod:`..decisions.user_certs`; this only signs it. The certificate permits a
pty and port forwarding (limited to the container's loopback by sshd's
``PermitOpen`` and the keys file's ``permitopen``), never agent or X11
forwarding or a user rc file. Its serial is random, so the audit line of the
issue and sshd's log of each login (``ID ... serial N``) can be matched.
"""

import secrets

from .sshlib import asyncssh


def issue(ca_key, public_line, plan):
    """``(serial, certificate line)`` for the user's public key ``public_line`` as ``plan`` says."""
    serial = secrets.randbits(63)
    cert = ca_key.generate_user_certificate(
        asyncssh.import_public_key(public_line), plan.key_id, serial=serial, principals=list(plan.principals),
        valid_after=plan.valid_after, valid_before=plan.valid_before, permit_x11_forwarding=False,
        permit_agent_forwarding=False, permit_port_forwarding=True, permit_pty=True, permit_user_rc=False,
        comment=plan.key_id)
    return serial, cert.export_certificate("openssh").decode()
