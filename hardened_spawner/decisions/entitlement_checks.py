"""Which users the hub re-checks in the background, and when: pure, no I/O.

A user who only uses SSH, or leaves a server running, never requests a hub
page, so nothing re-checks them on the way. The hub re-checks every user who
is still using it: a running server, or an SSH session (the gateway asks the
hub's access API about each open connection every few seconds, and at each
login). Each such user is re-checked once per ``interval``; the checks are
spread over the interval (a share of the users per tick, those never checked
and then the longest unchecked first), so a hub of 1,000 users sends its
identity provider a steady trickle, not a burst. Withdrawn users are not
re-checked (they stay out until they log in again), but a server of theirs
that still runs is stopped.
"""

import math


def candidates(running, ssh_seen, withdrawn, now, interval):
    """Users to keep re-checking: with a running server, or asked about by the SSH gateway within
    ``interval`` seconds (``ssh_seen``: name -> when), and not withdrawn already."""
    recent = {name for name, when in ssh_seen.items() if now - when <= interval}
    return (set(running) | recent) - set(withdrawn)


def due(users, last_checked, now, interval, tick):
    """The users of ``users`` to re-check at this tick, in order.

    A user is due when never checked, or checked (in the background, by a
    page's refresh or at login) ``interval`` seconds ago or more. At most the
    share ``tick / interval`` of ``users`` (at least one) is returned,
    never-checked first, then the longest unchecked, so the IdP's load stays even.
    """
    late = [name for name in users if now - last_checked.get(name, -math.inf) >= interval]
    late.sort(key=lambda name: (last_checked.get(name, -math.inf), name))
    share = max(1, math.ceil(len(users) * tick / interval)) if users else 0
    return late[:share]


def tick_for(interval):
    """Seconds between ticks: a tenth of the interval, between 1 s and 30 s."""
    return min(30.0, max(1.0, interval / 10))


def still_running(running, withdrawn):
    """Withdrawn users whose servers still run (a stop that failed, or a hub that died mid-stop): stop them."""
    return sorted(set(running) & set(withdrawn))


def config_refusal(blocked, allowed):
    """For an authenticator without an identity provider to ask: the reason code that withdraws a
    user's access by the hub's own configuration (``blocked``: in ``blocked_users``; ``allowed``:
    what the authenticator's ``check_allowed`` answers), or None while they may stay."""
    if blocked:
        return "blocked"
    if not allowed:
        return "not-allowed"
    return None
