"""When the hub renews a running server's host certificate. Pure.

A host certificate is valid for ``ssh_host_certificate_days`` from its start
(:mod:`..keys.host_certs`); a server that runs longer gets a new certificate
for the same host key once less than :data:`RENEW_FRACTION` of that lifetime
is left, so ssh and the gateway never see it expire while the server runs.
A third leaves room for a hub that is down or busy for a while: with the
default 30 days the hub renews 10 days before the end.

The hub polls each running server every ``c.Spawner.poll_interval``; it reads
the container only when :func:`look_now` says so: when it does not know the
certificate's end (the first poll after a hub restart), or when it is due.
"""

RENEW_FRACTION = 1 / 3
RETRY_AFTER = 300  # seconds (at most) before a renewal that failed is tried again


def renewal_due(valid_before, lifetime, now, fraction=RENEW_FRACTION):
    """True when a certificate valid until ``valid_before`` (seconds since the epoch) has less than
    ``fraction`` of ``lifetime`` seconds left at ``now`` (an expired one is due too)."""
    return valid_before - now < lifetime * fraction


def look_now(valid_before, lifetime, now, retry_at=0.0):
    """Whether a poll at ``now`` reads the server's certificate: its end ``valid_before`` is unknown
    (None) or :func:`renewal_due`, and an earlier failure's ``retry_at`` has passed."""
    return now >= retry_at and (valid_before is None or renewal_due(valid_before, lifetime, now))


def retry_at(lifetime, now):
    """When a renewal that failed at ``now`` is tried again: after :data:`RETRY_AFTER` seconds, or a
    quarter of the renewal window for short lifetimes, so a few retries fit before the end."""
    return now + min(RETRY_AFTER, lifetime * RENEW_FRACTION / 4)
