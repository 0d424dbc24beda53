"""The SSH keys service's core: list, add and remove a user's keys, and deliver them live.

Every change goes through the configured key store (its own concurrency
control), the same validation policy as a spawn, one audit event with
fingerprints only, and then live delivery: the user's running containers get
the rewritten ``authorized_keys`` within seconds (:mod:`..keys.live`).

Store and Docker calls run on this service's own threads with the store
timeout; deliveries for one user run one at a time and each re-reads the
store, so the last one always writes the latest keys.
"""

import asyncio
import datetime
from dataclasses import dataclass, field

from docker.errors import DockerException
from requests.exceptions import RequestException

from ..keys.entries import KeyRefused, add_line, check_new_key, list_entries, remove_fingerprint
from ..keys.live import LiveDeliveryError, find_target, write_keys
from ..keys.stores import KeyStoreError
from ..keys.targets import TargetRefused
from ..keys.validation import check_keys, render_authorized_keys


class NoSuchUser(LookupError):
    """The hub has no user of that name."""


class KeyNotFound(LookupError):
    """No key with that fingerprint in the user's own keys."""


@dataclass
class Listing:
    """A user's keys, grouped by where they come from, as the page and the API show them."""

    user: str
    store: str
    read_only_reason: str
    sources: list = field(default_factory=list)  # [(source name, writable, [KeyEntry])]
    problem: str = ""  # the store could not be read

    @property
    def count(self):
        return sum(len(entries) for _, _, entries in self.sources)

    def as_dict(self):
        keys = [entry.as_dict(name) for name, _, entries in self.sources for entry in entries]
        return {"user": self.user, "store": self.store, "writable": not self.read_only_reason,
                "read_only_reason": self.read_only_reason, "problem": self.problem, "keys": keys}


@dataclass(frozen=True)
class Delivery:
    server: str
    ok: bool
    message: str

    def as_dict(self):
        return {"server": self.server, "ok": self.ok, "message": self.message}


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyRing:
    """One hub's users' keys. ``hub`` is a :class:`.hub.HubAPI`; ``docker()`` returns a docker-py APIClient."""

    certificates = None  # a .certificates.CertificateIssuer with ssh_user_certificates

    def __init__(self, store, policy, timeout, audit, hub, docker, executor, follow_seconds=180.0):
        self.store, self.policy, self.timeout = store, policy, timeout
        self.audit, self.hub, self.docker, self.executor = audit, hub, docker, executor
        self.follow_seconds = follow_seconds
        self._locks = {}
        self._following = {}

    async def _thread(self, fn, *args, what=None):
        """``fn(*args)`` on this service's threads, within the store timeout."""
        future = asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        try:
            return await asyncio.wait_for(future, self.timeout)
        except asyncio.TimeoutError:
            if what:
                raise LiveDeliveryError(f"{what} did not answer within {self.timeout:g} s") from None
            raise self.store.error(f"no answer within {self.timeout:g} s") from None

    async def _user(self, username):
        """The user's hub model; hands their auth_state to the store (keys from the IdP)."""
        model = await self.hub.user(username)
        if model is None:
            raise NoSuchUser(username)
        self.store.use_auth_state(username, model.get("auth_state"))
        return model

    async def listing(self, username):
        await self._user(username)
        listing = Listing(username, self.store.describe(), self.store.read_only_reason())
        try:
            sources = await self._thread(self.store.sources, username)
        except KeyStoreError as e:
            listing.problem = str(e)
            return listing
        listing.sources = [(s.name, s.writable, list_entries(s.text or "", self.policy)) for s in sources]
        return listing

    async def add(self, username, pasted, actor):
        """Validate and store one pasted key; returns ``(accepted key, [Delivery])``."""
        await self._user(username)
        reason = self.store.read_only_reason()
        accepted = []

        def change(text):
            line, key = check_new_key(pasted, text, self.policy)
            accepted[:] = [key]
            return add_line(text, line, now_iso())

        try:
            if reason:
                raise KeyRefused(reason[0].upper() + reason[1:] + ".")
            await self._thread(self.store.update, username, change)
        except KeyRefused as e:
            self.audit.write("ssh.keys.refused", user=username, actor=actor, reason=str(e))
            raise
        key = accepted[0]
        self.audit.write("ssh.keys.added", user=username, actor=actor, type=key.key_type,
                         fingerprint=key.fingerprint, store=self.store.describe())
        return key, await self.deliver(username)

    async def remove(self, username, fingerprint, actor):
        """Remove the key ``fingerprint`` from the user's own keys; returns ``[Delivery]``."""
        listing = await self.listing(username)
        if listing.problem:
            raise KeyStoreError(self.store.describe(), listing.problem)
        mine = [e for name, writable, entries in listing.sources if writable for e in entries]
        if not any(e.fingerprint == fingerprint for e in mine):
            others = [name for name, writable, entries in listing.sources if not writable
                      for e in entries if e.fingerprint == fingerprint]
            if others:
                raise KeyRefused(f"This key comes from the {others[0]}: remove it there.")
            raise KeyNotFound(fingerprint)
        if listing.read_only_reason:
            raise KeyRefused(listing.read_only_reason[0].upper() + listing.read_only_reason[1:] + ".")

        def change(text):
            new, removed = remove_fingerprint(text, fingerprint)
            if not removed:
                raise KeyNotFound(fingerprint)
            return new

        await self._thread(self.store.update, username, change)
        self.audit.write("ssh.keys.removed", user=username, actor=actor, fingerprint=fingerprint,
                         store=self.store.describe())
        return await self.deliver(username)

    # ---- live delivery ----------------------------------------------------------------
    async def deliver(self, username):
        """Write the user's current keys into each of their running containers."""
        lock = self._locks.setdefault(username, asyncio.Lock())
        async with lock:
            try:
                model = await self._user(username)
                text = await self._thread(self.store.fetch, username)
            except (KeyStoreError, TargetRefused) as e:
                self.audit.write("ssh.keys.live", user=username, decision="failed", reason=str(e))
                return [Delivery("", False, f"your keys could not be read again to deliver them ({e}); "
                                 "your servers get them at their next start")]
            check = check_keys(text or "", self.policy)
            rendered = render_authorized_keys(check, self.policy.forced_options)
            results, pending = [], False
            for name, server in sorted((model.get("servers") or {}).items()):
                if server.get("pending") == "spawn":
                    pending = True
                if not server.get("ready"):
                    continue
                if self.certificates is not None:  # the container trusts the CA only: its keys file stays
                    continue
                results.append(await self._deliver_one(username, name, server, rendered, check))
        if pending:
            self._follow(username)
        return results

    async def _deliver_one(self, username, name, server, rendered, check):
        object_id = (server.get("state") or {}).get("object_id") or ""
        fields = {"user": username, "server": name, "fingerprints": check.fingerprints}
        try:
            if not object_id:
                raise LiveDeliveryError("the hub recorded no container for it")
            target = await self._thread(lambda: find_target(self.docker(), object_id, username), what="Docker")
            await self._thread(lambda: write_keys(self.docker(), target, rendered, username), what="Docker")
        except (LiveDeliveryError, DockerException, RequestException) as e:
            reason = str(e) if isinstance(e, LiveDeliveryError) else f"Docker cannot be reached ({type(e).__name__})"
            self.audit.write("ssh.keys.live", **fields, decision="failed", reason=reason)
            return Delivery(name, False, f"{reason}; it gets your keys at its next start")
        self.audit.write("ssh.keys.live", **fields, decision="delivered", container=target.container_id[:12])
        return Delivery(name, True, "updated")

    def _follow(self, username):
        """A server still starting may have read the store before this change: deliver when it is up."""
        if username in self._following:
            return

        async def follow():
            deadline = asyncio.get_running_loop().time() + self.follow_seconds
            try:
                while asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(1.0)
                    servers = (await self.hub.user(username) or {}).get("servers") or {}
                    if not any(s.get("pending") == "spawn" for s in servers.values()):
                        await self.deliver(username)
                        return
            finally:
                self._following.pop(username, None)

        self._following[username] = asyncio.ensure_future(follow())
