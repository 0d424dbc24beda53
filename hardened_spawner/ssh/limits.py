"""How much one client address may ask of the SSH gateway, so that no one can use it against others. Pure
bookkeeping; the clock is injected.

Many users may share one address (a NAT, a load balancer, a campus proxy),
an attacker among them. So no limit of an address may lock out the people
behind it who log in properly:

- **Pending connections** (not logged in yet) are capped per address
  (``pending``). A new one at the cap is always let in: the pending
  connection of that address that got least far is closed instead, the
  oldest first (as sshd's ``MaxStartups`` makes room rather than serving
  no one). How far a connection got is the caller's ``progress`` number:
  one that can no longer log in (throttled, no key to check) goes first,
  then one that sent nothing, one still exchanging keys, and last one that
  is authenticating with keys to check. Idle sockets therefore only ever
  push out each other, never a client that is logging in. Each pending
  connection also has the gateway's login grace time (``login_timeout``).
- **All pending connections together** (every address) follow sshd's
  ``MaxStartups start:rate:full`` (``startups``): from ``start`` pending
  connections on, a new one is refused with probability ``rate`` percent,
  rising linearly to every one at ``full``. A new connection that takes the
  place of one of its own address's (above) does not add to the total, so
  it is never refused for it: one address cannot push the others into it.
- **Logged-in connections** are counted per *user* (``sessions``), not per
  address: only the user who holds them is limited by them.
- **Failed logins** are capped per address (``logins`` per ``window``
  seconds; each asks the keys service and the hub). An attempt counts from
  its start (so a burst of parallel attempts is capped too) and is forgiven
  when it succeeds. A user who logged in through the gateway in the last
  :data:`REMEMBER_SECONDS` is never throttled: an attacker behind the same
  address who spends its budget cannot lock them out (the gateway shares
  one lookup per user at a time, so naming such users costs little). Only a
  first login from an address over its budget waits for the window.
"""

import collections
import random
import time

REMEMBER_SECONDS = 30 * 24 * 3600.0


def parse_startups(text):
    """``"start:rate:full"`` or ``"full"`` (as sshd's ``MaxStartups``) -> ``(start, rate, full)``; ValueError."""
    try:
        parts = [int(p) for p in str(text).split(":")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = [parts[0], 100, parts[0]]
    if len(parts) != 3 or not (0 < parts[0] <= parts[2] and 0 < parts[1] <= 100):
        raise ValueError(f"{text!r} is not start:rate:full (whole numbers, 0 < start <= full, "
                         "0 < rate <= 100, e.g. 50:30:200) or one number")
    return tuple(parts)


def refuse_chance(pending, start, rate, full):
    """The chance a new connection is refused with ``pending`` connections not logged in (sshd's random early drop)."""
    if pending < start:
        return 0.0
    if pending >= full:
        return 1.0
    return (rate + (100 - rate) * (pending - start) / (full - start)) / 100


class PeerLimits:
    def __init__(self, pending=10, sessions=50, logins=20, window=60.0, startups=(50, 30, 200),
                 clock=time.monotonic, chance=random.random):
        self.pending = pending
        self.startups = startups
        self.chance = chance
        self.sessions = sessions
        self.logins = logins
        self.window = window
        self.clock = clock
        self._pending = collections.defaultdict(dict)  # peer -> {connection: arrival time}
        self._sessions = collections.Counter()  # user -> logged-in connections
        self._attempts = collections.defaultdict(collections.deque)  # peer -> start times of counted attempts
        self._counted = set()  # connections whose login attempt was counted
        self._known = {}  # user -> time of their last login through the gateway
        self._drops = {}  # peer -> [drops not yet reported, time of the last report]

    def arrive(self, peer, conn, progress):
        """Admit ``conn`` from ``peer``; returns ``(connections to close, drops to report now)``.

        The connections to close are ``[conn]`` itself when all pending connections together are over
        ``startups``, else those of ``peer`` it takes the place of.

        ``progress(c)``: how far pending connection ``c`` got (a number, higher is further).
        The drops are reported at most once per window per address, with their count.
        """
        pending = self._pending[peer]
        refuse = 0.0 if len(pending) >= self.pending else refuse_chance(self.total_pending(), *self.startups)
        if refuse and self.chance() < refuse:
            if not pending:
                del self._pending[peer]
            return [conn], self._report(peer, 1)
        close = []
        while pending and len(pending) >= self.pending:
            victim = min(pending, key=lambda c: (progress(c), pending[c]))
            del pending[victim]
            self._counted.discard(victim)
            close.append(victim)
        pending[conn] = self.clock()
        return close, self._report(peer, len(close))

    def total_pending(self):
        return sum(len(p) for p in self._pending.values())

    def _report(self, peer, dropped):
        if not dropped:
            return 0
        now = self.clock()
        count, last = self._drops.get(peer, (0, None))
        count += dropped
        if last is not None and now - last < self.window:
            self._drops[peer] = [count, last]
            return 0
        self._drops[peer] = [0, now]
        return count

    def due_reports(self):
        """``{peer: drops}`` not reported yet whose window has passed (call now and then)."""
        now = self.clock()
        due = {p: count for p, (count, last) in self._drops.items() if count and now - last >= self.window}
        for peer in due:
            self._drops[peer] = [0, now]
        return due

    def login(self, peer, user, conn):
        """Count an authentication attempt by ``conn`` from ``peer`` as ``user``; why it is refused, or ""."""
        now = self.clock()
        if now - self._known.get(user, -REMEMBER_SECONDS) < REMEMBER_SECONDS:
            return ""
        attempts = self._attempts[peer]
        while attempts and attempts[0] <= now - self.window:
            attempts.popleft()
        if len(attempts) >= self.logins:
            return f"more than {self.logins} failed logins in {self.window:g} s from {peer}"
        attempts.append(now)
        self._counted.add(conn)
        return ""

    def authenticated(self, peer, conn, user):
        """``conn`` logged in as ``user``: no longer pending, its attempt forgiven, the user remembered.

        Returns why the connection may not stay ("" when it may; then call :meth:`leave` with ``user``).
        """
        self._forget_pending(peer, conn)
        if conn in self._counted:
            self._counted.discard(conn)
            attempts = self._attempts.get(peer)
            if attempts:
                attempts.pop()
        self._known[user] = self.clock()
        if self._sessions[user] >= self.sessions:
            return f"{user} has {self._sessions[user]} SSH connections through the gateway open already"
        self._sessions[user] += 1
        return ""

    def leave(self, peer, conn, user=None):
        """``conn`` closed; ``user``: the user it was counted for by :meth:`authenticated`, if any."""
        self._forget_pending(peer, conn)
        self._counted.discard(conn)
        if user is not None:
            self._sessions[user] -= 1
            if self._sessions[user] <= 0:
                del self._sessions[user]

    def _forget_pending(self, peer, conn):
        pending = self._pending.get(peer)
        if pending is not None:
            pending.pop(conn, None)
            if not pending:
                del self._pending[peer]

    def forget_idle(self):
        """Drop the bookkeeping of addresses with no recent attempts and of long-gone users (call now and then)."""
        now = self.clock()
        for peer in [p for p, a in self._attempts.items() if not a or a[-1] <= now - self.window]:
            del self._attempts[peer]
        for peer in [p for p, (count, last) in self._drops.items() if not count and now - last >= self.window]:
            del self._drops[peer]
        for user in [u for u, when in self._known.items() if now - when >= REMEMBER_SECONDS]:
            del self._known[user]
