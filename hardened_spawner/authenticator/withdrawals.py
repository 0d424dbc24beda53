"""Withdrawn access, for any authenticator: background re-checks, and withdrawals a hub restart keeps.

A user who only uses SSH, or leaves a server running, never requests a hub
page, so ``refresh_user`` never runs for them. Every
``entitlement_check_interval`` seconds :class:`Withdrawals` re-checks each
user with a running server or an SSH session (the SSH gateway asks the hub's
access API about every login and every open connection; the API calls
:meth:`Withdrawals.note_ssh_activity`). Who is due when is decided by
:mod:`..decisions.entitlement_checks`.

- HardenedOAuthenticator re-checks with the identity provider
  (:meth:`~.refresh.RevokingRefresh.recheck_access`, the same
  check as a page's refresh, with the refresh token kept in auth_state). A
  withdrawal stops the user's servers and is kept in their auth_state
  (encrypted in the hub database, under :data:`WITHDRAWN_KEY`), so a hub
  restart does not forget it; the next login that passes the checks replaces
  auth_state, which clears it.
- Any other authenticator (:func:`~hardened_spawner.authenticator.with_withdrawals`) re-checks the hub's own
  configuration: ``blocked_users`` and the authenticator's ``check_allowed``
  (``allowed_users``). The configuration is the record, so nothing is stored.

Either way the access API refuses the user (the gateway closes their sessions
and refuses logins), and :meth:`Withdrawals.pre_spawn_start` refuses every
spawn of theirs, whoever asks (the gateway's ``start_servers``, an admin, the API).
"""

import asyncio
import inspect
import time

from jupyterhub.utils import maybe_future
from traitlets import Float
from traitlets.config import LoggingConfigurable

from ..decisions import entitlement_checks
from ..decisions.access import Withdrawal

WITHDRAWN_KEY = "hardened_spawner_withdrawn"
PARALLEL = 4  # re-checks in flight at once


class Withdrawals(LoggingConfigurable):
    """Authenticator mixin: the background re-checks, the persisted withdrawals and the spawn refusal."""

    entitlement_check_interval = Float(
        300.0, min=0.0, config=True,
        help="""Seconds between background re-checks of each user who has a running server or an SSH
        session through the gateway, whether or not they visit the hub.

        HardenedOAuthenticator asks the identity provider (the refresh token in auth_state, as a page's
        refresh does); other authenticators re-read ``blocked_users`` and ``allowed_users``. A user who
        is no longer let in is withdrawn within this time plus a tenth of it (at most 30 s): their
        servers are stopped, the SSH gateway closes their sessions (within its ``recheck_interval``)
        and refuses new ones, no server of theirs starts, and the withdrawal is kept in the hub
        database until they log in again. Each IdP re-check is one refresh-token grant and one
        userinfo request, spread evenly over the interval: 1,000 active users at 300 s is about 3.3
        re-checks a second. 0 turns the background re-checks off (a page's refresh still revokes).""",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._revoked_users = {}  # name -> Withdrawal recorded by a re-check; cleared by their next login
        self._withdrawals_read = set()  # names whose auth_state was read for a kept withdrawal
        self._ssh_seen, self._last_checked = {}, {}  # name -> time.monotonic()
        self._check_loop = None
        self._tasks = set()

    def get_handlers(self, app):
        """Start the re-checks: the hub's event loop runs here (JupyterHub.initialize awaits)."""
        if app is not None and self.entitlement_check_interval > 0 and self._check_loop is None:
            self._check_loop = asyncio.ensure_future(self._checks_forever())
        return super().get_handlers(app)

    def note_ssh_activity(self, name):
        """The SSH gateway asked whether ``name`` may log in or keep a session: re-check them too."""
        self._ssh_seen[name] = time.monotonic()

    def note_checked(self, name):
        self._last_checked[name] = time.monotonic()

    def withdrawal(self, name):
        """The :class:`Withdrawal` a re-check recorded for ``name`` (in memory), until they log in again."""
        return self._revoked_users.get(name)

    async def load_withdrawal(self, user):
        """The recorded :class:`Withdrawal` of ``user`` (None if none), read once from auth_state."""
        if user.name not in self._withdrawals_read:
            recorded = (await user.get_auth_state() or {}).get(WITHDRAWN_KEY)
            if recorded is not None and user.name not in self._revoked_users:
                self._revoked_users[user.name] = Withdrawal.from_dict(user.name, recorded)
            self._withdrawals_read.add(user.name)
        return self._revoked_users.get(user.name)

    async def access_withdrawal(self, user):
        """Why ``user`` may no longer use the hub (a :class:`Withdrawal`), or None."""
        recorded = await self.load_withdrawal(user)
        if recorded is not None:
            return recorded
        reason = await self.config_refusal(user.name)
        if reason is None:
            return None
        return Withdrawal(user.name, reason, "by the hub's configuration", "hub-configuration")

    async def config_refusal(self, name):
        """The reason code that the hub's configuration refuses ``name`` for, or None."""
        blocked = name in (self.blocked_users or ())
        allowed = blocked or await self.still_allowed(name)
        return entitlement_checks.config_refusal(blocked, allowed)

    async def still_allowed(self, name):
        """The authenticator's own allow check (``allowed_users``, ``allow_all``, ...), without a login."""
        return bool(await maybe_future(self.check_allowed(name, None)))

    def remember_login(self, name):
        """A login that passed the checks: its new auth_state drops any kept withdrawal."""
        self._revoked_users.pop(name, None)
        self._withdrawals_read.add(name)
        self.note_checked(name)

    async def persist_withdrawal(self, user, withdrawal):
        """Keep ``withdrawal`` in ``user``'s auth_state (the hub database)."""
        auth_state = await user.get_auth_state() or {}
        auth_state[WITHDRAWN_KEY] = withdrawal.as_dict()
        await user.save_auth_state(auth_state)

    def pre_spawn_start(self, user, spawner):
        """No server of a withdrawn user starts, whoever asks (the SSH gateway, an admin, the API).

        Answers at once (None) when nothing can be withdrawn: no withdrawal kept or recorded in an
        auth_state, not blocked, allowed by a synchronous check. JupyterHub awaits what this returns
        before the spawner's own checks, and an awaitable always costs the spawn a turn of the event
        loop: a bad request would then get 202 and fail later instead of its 400 at once."""
        before = super().pre_spawn_start(user, spawner)
        if before is None and self._nothing_to_withdraw(user):
            return None
        return self._refuse_if_withdrawn(user, spawner, before)

    def _nothing_to_withdraw(self, user):
        if user.name in self._revoked_users or user.name in (self.blocked_users or ()):
            return False
        if user.name not in self._withdrawals_read and user.encrypted_auth_state is not None:
            return False  # a withdrawal may be recorded there: read it (load_withdrawal)
        allowed = self.check_allowed(user.name, None)
        if inspect.isawaitable(allowed):
            if inspect.iscoroutine(allowed):
                allowed.close()
            return False  # an asynchronous allow check: the full path awaits it
        return bool(allowed)

    async def _refuse_if_withdrawn(self, user, spawner, before):
        await maybe_future(before)
        withdrawal = await self.access_withdrawal(user)
        if withdrawal is not None:
            self.record("auth.spawn-refused", user=user.name, server=spawner.name, reason=withdrawal.reason,
                        ref=withdrawal.ref)
            raise RuntimeError(f"{user.name}'s access was withdrawn ({withdrawal.headline()}); "
                               "no server of theirs starts until they log in again")

    def record(self, event, **fields):
        """An audit line (HardenedOAuthenticator's audit log), else a hub log warning."""
        audit = getattr(self, "audit", None)
        if audit is not None:
            audit.write(event, **fields)
        else:
            self.log.warning("%s %s", event, " ".join(f"{k}={v}" for k, v in fields.items()))

    async def stop_server(self, user, name):
        """Stop ``user``'s server ``name`` without a request, as the hub's own stop does: proxy, then server."""
        await self.parent.proxy.delete_user(user, name)
        await user.stop(name)

    def servers_to_stop(self, user):
        """``user``'s running servers, which a withdrawal stops (unless ``stop_servers_on_revoke`` is False)."""
        if not getattr(self, "stop_servers_on_revoke", True):
            return []
        return [name for name, s in user.spawners.items() if s.active and not s.pending]

    def stop_servers(self, user, names, reason, handler=None):
        """Stop ``user``'s servers ``names`` in the background. ``handler``: the request being served,
        if any (then its stop, the hub's, is used)."""
        stop = handler.stop_single_user if handler is not None else self.stop_server
        for name in names:
            self.record("auth.server-stopped", user=user.name, server=name, reason=reason)
            self.background(stop(user, name))

    def background(self, coro):
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def recheck(self, user):
        """Re-check one user in the background; False when their access is withdrawn.

        Here, by the hub's configuration; HardenedOAuthenticator asks the identity provider."""
        reason = await self.config_refusal(user.name)
        if reason is None:
            return True
        self.stop_servers(user, self.servers_to_stop(user), reason)  # the configuration is the record
        return False

    async def _checks_forever(self):
        tick = entitlement_checks.tick_for(self.entitlement_check_interval)
        while True:
            await asyncio.sleep(tick)
            try:
                await self.check_due(tick)
            except Exception:  # noqa: BLE001 - the loop outlives any one round
                self.log.exception("background re-check of users' access failed; retrying in %g s", tick)

    async def check_due(self, tick):
        """Re-check the users due now (see :func:`..decisions.entitlement_checks.due`)."""
        users = self.parent.users
        now, interval = time.monotonic(), self.entitlement_check_interval
        running = [u.name for u in list(users.values()) if any(s.active for s in u.spawners.values())]
        for name in entitlement_checks.still_running(running, self._revoked_users):
            self.stop_servers(users[name], self.servers_to_stop(users[name]), self._revoked_users[name].reason)
        wanted = entitlement_checks.candidates(running, self._ssh_seen, self._revoked_users, now, interval)
        names = entitlement_checks.due(sorted(wanted), self._last_checked, now, interval, tick)
        gate = asyncio.Semaphore(PARALLEL)

        async def one(name):
            async with gate:
                self.note_checked(name)  # a check that fails is tried again an interval later, not every tick
                try:
                    user = users[name]
                except KeyError:  # deleted since the gateway asked about them
                    self._ssh_seen.pop(name, None)
                    return
                result = await self.recheck(user)
                if isinstance(result, dict) and result.get("auth_state") is not None:
                    await user.save_auth_state(result["auth_state"])  # a rotated refresh token is kept

        for name, failed in zip(names, await asyncio.gather(*(one(n) for n in names), return_exceptions=True)):
            if isinstance(failed, Exception):
                self.log.error("background re-check of %s failed: %r; next try in %g s", name, failed, interval)
