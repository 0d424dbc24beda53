"""SSH user certificates (``ssh_user_certificates``): who a certificate names, for how long, and what
the container trusts instead of users' keys. Pure.

A certificate is for one of the user's servers: its one principal is the name the user types for
that server (``alice``, ``alice.gpu``, as the host certificate's), and the container's keys file
holds only the CA, with ``cert-authority,principals="<that name>"``. So a certificate of bob's, or
of alice's other server, does not open this container, although every container logs in as the
same account (``jovyan``): the principal binds the certificate to the hub user and server, not to
the container's account. The Key ID (``user=alice server=gpu``) is what sshd logs for each login.
"""

import re
from dataclasses import dataclass

from .ssh_names import logical_target

SERVER_NAME = re.compile(r"[A-Za-z0-9._-]*")
UNSAFE_PRINCIPAL = re.compile(r'[",*?!\\\s\x00-\x1f\x7f]')
CLOCK_SKEW = 60  # seconds a certificate is valid before it is made: clocks of hub and client differ


class CertificateRefused(ValueError):
    """No certificate is issued; the message says why and what to do."""


class LifetimeRefused(CertificateRefused):
    """The lifetime asked for is not a positive number of hours; the message says so."""


@dataclass(frozen=True)
class CertificatePlan:
    key_id: str
    principals: tuple
    valid_after: int   # seconds since the epoch
    valid_before: int
    capped: bool       # the lifetime asked for was longer than the hub allows

    def as_audit(self):
        return {"key_id": self.key_id, "principals": list(self.principals),
                "valid_after": self.valid_after, "valid_before": self.valid_before, "capped": self.capped}


def principal(username, server_name):
    """The certificate's principal for ``username``'s server (ssh lower-cases host names; so do we).

    A name that the keys file's ``principals="..."`` list could not carry as one name (a quote, a
    comma, a blank, a pattern character) is refused: ``a,b`` would also admit ``a``'s certificates."""
    name = logical_target(username, server_name).lower()
    if UNSAFE_PRINCIPAL.search(name):
        raise CertificateRefused(f"The user name {username!r} cannot be named in an SSH certificate "
                                 "(it has a quote, comma, blank or pattern character): tell the hub admin.")
    return name


def key_id(username, server_name):
    return f"user={username} server={server_name or '(default)'}"


def plan(username, server_name, now, max_hours, hours=None):
    """The certificate for ``username``'s server ``server_name`` made at ``now``: valid for ``hours``
    (None: the maximum), never longer than ``max_hours``, from a minute before ``now``."""
    if not SERVER_NAME.fullmatch(server_name):
        raise CertificateRefused(f"{server_name!r} is not a server name (letters, digits, '.', '_' and '-').")
    if hours is not None and not hours > 0:
        raise LifetimeRefused(f"a certificate lifetime must be more than 0 hours, not {hours!r}")
    asked = max_hours if hours is None else hours
    seconds = int(min(asked, max_hours) * 3600)
    return CertificatePlan(key_id(username, server_name), (principal(username, server_name),),
                           int(now) - CLOCK_SKEW, int(now) + seconds, asked > max_hours)


def trusted_ca_lines(ca_lines, username, server_name, forced_options):
    """The container's keys file: each accepted CA, trusted for this server's principal only, with the
    options forced on every key (``restrict``, loopback ``permitopen``), and no user key at all."""
    try:
        name = principal(username, server_name)
    except CertificateRefused:
        return ""  # no certificate can name this server: nothing is trusted, sshd does not start
    return "".join(f'cert-authority,principals="{name}",{forced_options} {line}\n' for line in ca_lines)


def choose_key(usable, fingerprint=None):
    """The registered key (a :class:`..keys.entries.KeyEntry`, usable) to certify: the one with
    ``fingerprint``, or the only one when none is named."""
    if not usable:
        raise CertificateRefused("You have no usable SSH key registered: add your public key on the SSH keys "
                                 "page first, then get a certificate for it.")
    if fingerprint:
        for entry in usable:
            if entry.fingerprint == fingerprint:
                return entry
        raise CertificateRefused(f"No usable registered key has the fingerprint {fingerprint}; yours: "
                                 + ", ".join(e.fingerprint for e in usable) + ".")
    if len(usable) > 1:
        raise CertificateRefused("You have several keys registered: name the one to certify with ?key=<fingerprint> "
                                 "(" + ", ".join(e.fingerprint for e in usable) + ").")
    return usable[0]
