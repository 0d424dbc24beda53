"""How much one client address may ask of the SSH gateway. Pure bookkeeping; the clock is injected.

Every login makes the gateway ask the keys service (and through it the key
store, perhaps Vault) and the hub. Without limits, one unauthenticated
client cycling user names turns into one store read per attempt and starves
real logins. Per client address: at most ``connections`` open at once and
``logins`` authentication attempts that did not succeed in any ``window``
seconds; past that the gateway answers without asking anyone. An attempt
counts from its start (so a burst of parallel attempts is capped too) and
is forgiven when it succeeds: many users behind one NAT address, or one
user's scripted connections, are never throttled for logging in.
"""

import collections
import time


class PeerLimits:
    def __init__(self, connections=10, logins=20, window=60.0, clock=time.monotonic):
        self.connections = connections
        self.logins = logins
        self.window = window
        self.clock = clock
        self._open = collections.Counter()
        self._attempts = collections.defaultdict(collections.deque)

    def connect(self, peer):
        """Count a new connection from ``peer``; why it is refused, or "" (then call :meth:`disconnect`)."""
        if self._open[peer] >= self.connections:
            return f"more than {self.connections} connections at once from {peer}"
        self._open[peer] += 1
        return ""

    def disconnect(self, peer):
        self._open[peer] -= 1
        if self._open[peer] <= 0:
            del self._open[peer]

    def login(self, peer):
        """Count an authentication attempt from ``peer``; why it is refused, or ""."""
        now = self.clock()
        attempts = self._attempts[peer]
        while attempts and attempts[0] <= now - self.window:
            attempts.popleft()
        if len(attempts) >= self.logins:
            return f"more than {self.logins} logins in {self.window:g} s from {peer}"
        attempts.append(now)
        return ""

    def succeeded(self, peer):
        """Forgive one attempt of ``peer``: it logged in."""
        attempts = self._attempts.get(peer)
        if attempts:
            attempts.pop()

    def forget_idle(self):
        """Drop the bookkeeping of addresses with no recent attempts (call now and then)."""
        now = self.clock()
        for peer in [p for p, a in self._attempts.items() if not a or a[-1] <= now - self.window]:
            del self._attempts[peer]
