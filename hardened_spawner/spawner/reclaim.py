"""Taking GPUs back from idle servers: the lease a server keeps in its state, and the hub's reclaimer.

A server that got GPUs records its lease (profile, GPU ids, since when) in
its spawner state, so a restarted hub knows it. The process-wide
:class:`IdleReclaimer` (``clients.reclaimer()``) looks at every running GPU
server each ``gpu_reclaim_interval`` seconds: it asks the server for its
kernels' and terminals' activity (``/api/kernels``, ``/api/terminals`` with
``no_track_activity``, so asking is not activity), falls back to the hub's
last-activity when the server does not answer, lets
:func:`~..decisions.idle.judge` decide, warns the user on the hub's pages,
then stops the server the way the hub does (proxy route, then
``User.stop``), which frees its GPUs. Every warning and stop is audited.
"""

import asyncio
import datetime
import json
import time
import weakref

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from ..decisions.idle import Activity, ReclaimPolicy, judge, stopped_text, warning_text

UTC = datetime.timezone.utc
NOTICE_HOURS = 24  # how long the "your server was stopped" notice stays


def _utc(value):
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class LeaseState:
    """The spawner side: ``gpu_lease`` while the server holds GPUs, kept in the spawner's state."""

    gpu_lease = None  # {"profile": slug, "gpus": [ids], "count": n, "since": epoch seconds}

    def record_lease(self, profile, limits):
        self.gpu_lease = ({"profile": profile.slug, "gpus": list(limits.gpus or ()), "count": profile.gpus,
                           "since": time.time()} if profile.gpus else None)

    def reclaim_policy(self):
        """The reclaim policy of the lease's profile (the current configuration's)."""
        slug = (self.gpu_lease or {}).get("profile")
        profile = next((p for p in self.profile_catalog()[0] if p.slug == slug), None)
        return profile.reclaim if profile else ReclaimPolicy()

    def get_state(self):
        state = super().get_state()
        if self.gpu_lease:
            state["gpu_lease"] = dict(self.gpu_lease)
        return state

    def load_state(self, state):
        super().load_state(state)
        lease = state.get("gpu_lease")
        self.gpu_lease = dict(lease) if isinstance(lease, dict) else None

    def clear_state(self):
        super().clear_state()
        self.gpu_lease = None


async def server_activity(spawner, timeout=5.0):
    """``(newest kernel/terminal activity or None, a kernel is busy)`` from the server itself; None if it does not answer."""
    server = spawner.server
    if server is None or not spawner.api_token:
        return None
    newest, busy = None, False
    for path, key in (("api/kernels", "kernels"), ("api/terminals", "terminals")):
        request = HTTPRequest(f"{server.url.rstrip('/')}/{path}?no_track_activity=1",
                              headers={"Authorization": f"token {spawner.api_token}"}, request_timeout=timeout)
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
            items = json.loads(response.body) if response.code == 200 else None
        except (OSError, ValueError):
            items = None
        if not isinstance(items, list):
            if key == "kernels":
                return None  # no Jupyter server API to ask: the hub's last-activity decides
            continue  # a server without terminals
        for item in items:
            when = _utc(item.get("last_activity")) if isinstance(item, dict) else None
            newest = when if when and (newest is None or when > newest) else newest
            busy = busy or (key == "kernels" and item.get("execution_state") in ("busy", "starting"))
    return newest, busy


class IdleReclaimer:
    """Warns, then stops, GPU servers idle or held too long (one per hub process)."""

    def __init__(self, log=None, activity=server_activity, clock=lambda: datetime.datetime.now(UTC)):
        self.log = log
        self.activity = activity
        self.clock = clock
        self.spawners = weakref.WeakSet()
        self.interval = 60.0
        self.notices = {}   # (user, server) -> (text, kind, at)
        self.warned = {}    # (user, server, since) -> when the user was warned
        self.status = {}    # (user, server) -> (Activity, Judgement) of the last look
        self._task = None

    def watch(self, spawner):
        """Look at ``spawner`` from now on (started, or found running after a hub restart)."""
        self.spawners.add(spawner)
        self.log = self.log or spawner.log
        self.interval = max(1.0, spawner.gpu_reclaim_interval)
        if spawner.reclaim_policy().active and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._loop())

    def started(self, spawner):
        """A server (re)started: its old notices are over."""
        self.notices.pop((spawner.user.name, spawner.name or ""), None)
        self.watch(spawner)

    def notices_for(self, username):
        now = self.clock()
        return [text for (user, _), (text, kind, at) in sorted(self.notices.items())
                if user == username and (kind == "warning" or now - at < datetime.timedelta(hours=NOTICE_HOURS))]

    def notice(self, username, server):
        entry = self.notices.get((username, server or ""))
        return entry[0] if entry else ""

    async def _loop(self):
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.look()
            except Exception:
                self.log.exception("GPU reclaim: a look at the GPU servers failed")

    async def look(self):
        """One look at every watched GPU server, all at once (a server that does not answer delays none)."""
        await asyncio.gather(*(self._look_at(s) for s in list(self.spawners)))

    async def _look_at(self, spawner):
        lease = spawner.gpu_lease
        if not lease or not spawner.ready:
            return
        try:
            policy = spawner.reclaim_policy()
            if policy.active:
                await self._judge(spawner, lease, policy)
        except Exception:
            self.log.exception("GPU reclaim: could not look at %s", spawner._log_name)

    async def _judge(self, spawner, lease, policy):
        key = (spawner.user.name, spawner.name or "")
        since = datetime.datetime.fromtimestamp(lease["since"], UTC)
        seen = await self.activity(spawner)
        if seen is None:
            activity = Activity(since, _utc(spawner.orm_spawner.last_activity), False, "hub")
        else:
            activity = Activity(since, seen[0], seen[1], "server")
        now = self.clock()
        warned_key = key + (lease["since"],)
        verdict = judge(policy, activity, now, self.warned.get(warned_key))
        self.status[key] = (activity, verdict)
        fields = dict(user=key[0], server=key[1], profile=lease["profile"], gpus=lease["gpus"],
                      reason=verdict.reason, since=since.isoformat(), activity_source=activity.source,
                      last_activity=activity.last.isoformat() if activity.last else None,
                      deadline=verdict.deadline.isoformat() if verdict.deadline else None,
                      idle_minutes=policy.idle_minutes, max_age_minutes=policy.max_age_minutes)
        if verdict.action == "keep":
            if self.warned.pop(warned_key, None) is not None:
                self.notices.pop(key, None)  # active again: the warning is over
            return
        if verdict.action == "warn":
            if warned_key not in self.warned:
                self.warned[warned_key] = now
                spawner.audit.write("gpu.idle-warning", **fields)
                self.log.info("GPU reclaim: warned %s (%s, due %s)", spawner._log_name, verdict.reason,
                              verdict.deadline.isoformat())
            self.notices[key] = (warning_text(key[1], lease["gpus"], verdict, policy, now), "warning", now)
            return
        spawner.audit.write("gpu.reclaim", **fields)
        self.log.warning("GPU reclaim: stopping %s (%s)", spawner._log_name, verdict.reason)
        self.warned.pop(warned_key, None)
        self.notices[key] = (stopped_text(key[1], lease["gpus"], verdict.reason, policy, now), "stopped", now)
        await stop_server(spawner)


async def stop_server(spawner):
    """Stop a server as the hub's own stop does: remove its proxy route, then ``User.stop``."""
    user, name = spawner.user, spawner.name or ""
    if spawner.pending or user.spawners.get(name) is not spawner:
        return False
    await user.settings["proxy"].delete_user(user, name)
    await user.stop(name)
    return True
