"""When the hub renews a running server's host certificate. Pure.

A host certificate is valid for ``ssh_host_certificate_days`` from its start
(:mod:`..keys.host_certs`); a server that runs longer gets a new certificate
for the same host key once less than :data:`RENEW_FRACTION` of that lifetime
is left, so ssh and the gateway never see it expire while the server runs.
A third leaves room for a hub that is down or busy for a while: with the
default 30 days the hub renews 10 days before the end.
"""

RENEW_FRACTION = 1 / 3


def renewal_due(valid_before, lifetime, now, fraction=RENEW_FRACTION):
    """True when a certificate valid until ``valid_before`` (seconds since the epoch) has less than
    ``fraction`` of ``lifetime`` seconds left at ``now`` (an expired one is due too)."""
    return valid_before - now < lifetime * fraction


def next_check(valid_before, lifetime, fraction=RENEW_FRACTION):
    """The time (seconds since the epoch) from which :func:`renewal_due` holds."""
    return valid_before - lifetime * fraction
