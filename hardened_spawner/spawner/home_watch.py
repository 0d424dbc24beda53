"""The watcher of homes the filesystem does not bound (``home_quota_mode = "watch"``): measure, decide, act.

The I/O of :mod:`..decisions.home_watch`. A spawn measures the home before the
container is created and is refused (``home-full``) at its quota. The
process-wide :class:`HomeWatcher` (``clients.home_watcher()``) looks at every
running watched server each ``home_watch_interval`` seconds: one
``docker system df`` per daemon gives every volume's size (Docker walks each
volume's directory; benchmarks/README.md has its cost), the decision says the
step, the user reads the notice on the hub's pages and in the spawn form, each
change of step is audited (``home.watch``), and a server past its grace is
stopped the way the hub stops one. Nothing is deleted.
"""

import asyncio
import time
import weakref

from docker.errors import APIError

from ..decisions.home_watch import WatchState, level, spawn_refusal, watch_step
from ..errors import SpawnRefused
from . import clients
from .reclaim import stop_server


def volume_sizes(df):
    """``{volume: bytes}`` of a ``docker system df`` answer (a volume Docker did not measure, -1, is left out)."""
    return {v["Name"]: v["UsageData"]["Size"] for v in df.get("Volumes") or ()
            if (v.get("UsageData") or {}).get("Size", -1) >= 0}


BUSY = "a disk usage operation is already running"  # Docker answers 500 to a df while another runs
TRIES = 40  # 0.25 s apart: another process's df (an admin's `docker system df`) is waited for up to 10 s


async def measure(io):
    """Every volume's size; concurrent callers in this process share one ``df`` per daemon."""
    for attempt in range(TRIES):
        try:
            df, _ = await clients.flights().get(("df", id(io.client)), lambda: io("df"))
            return volume_sizes(df)
        except APIError as e:
            if BUSY not in str(e) or attempt == TRIES - 1:
                raise
            await asyncio.sleep(0.25)


class WatchedHome:
    """The spawner side: ``watched_home`` (volume, quota bytes) while a watched server runs, kept in its state."""

    watched_home = None

    async def watch_home(self, volume, quota):
        """Refuse the start (``home-full``) when ``volume`` is at or over ``quota`` bytes; else watch it."""
        used = (await measure(self.docker_io)).get(volume, 0)  # not there yet: Docker makes it empty
        refusal = spawn_refusal(volume, used, quota)
        if refusal:
            raise SpawnRefused(refusal, reason="home-full",
                               detail=f"volume {volume} uses {used} bytes; home_quota is {quota} bytes")
        clients.home_watcher().usage[volume] = (used, quota, time.time(), self.user.name)
        self.watched_home = (volume, quota)

    def get_state(self):
        state = super().get_state()
        if self.watched_home:
            state["home_watch"] = list(self.watched_home)
        return state

    def load_state(self, state):
        super().load_state(state)
        watched = state.get("home_watch")
        self.watched_home = tuple(watched) if isinstance(watched, list) and len(watched) == 2 else None
        if self.watched_home:  # a running server found by a hub that (re)started
            clients.home_watcher().watch(self)

    def clear_state(self):
        super().clear_state()
        self.watched_home = None


class HomeWatcher:
    """Notices, refusals and stops for watched homes (one per hub process)."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self.spawners = weakref.WeakSet()
        self.states = {}   # (user, server) -> WatchState of the last look
        self.notices = {}  # (user, server) -> what the user reads
        self.usage = {}    # volume -> (bytes used, quota, when measured, user) of the last look or spawn
        self.per_user = False  # home_metrics_per_user
        self.interval, self.log, self._task = 60.0, None, None

    def watch(self, spawner):
        self.spawners.add(spawner)
        self.log = spawner.log
        self.interval = max(1.0, spawner.home_watch_interval)
        self.per_user = spawner.home_metrics_per_user
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._loop())

    def started(self, spawner):
        """A server started: what was said of its home before is over (the next look says it again)."""
        key = (spawner.user.name, spawner.name or "")
        self.notices.pop(key, None)
        self.states.pop(key, None)
        if spawner.watched_home:
            self.watch(spawner)

    def figures(self):
        """``(per_user, [(user, bytes used, quota, level), ...])`` for the metrics (telemetry/metrics.py)."""
        return self.per_user, [(user, used, quota, level(used, quota)) for used, quota, _, user in self.usage.values()]

    def notice(self, username, server):
        return self.notices.get((username, server or ""), "")

    def notices_for(self, username):
        return [text for (user, _), text in sorted(self.notices.items()) if user == username]

    async def _loop(self):
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.look()
            except Exception:
                self.log.exception("home watch: a look at the watched homes failed")

    async def look(self):
        """One ``df`` per daemon, then every watched running server's step."""
        by_daemon = {}
        for spawner in list(self.spawners):
            if spawner.watched_home and spawner.ready:
                by_daemon.setdefault(id(spawner.docker_io), (spawner.docker_io, []))[1].append(spawner)
        for io, spawners in by_daemon.values():
            sizes = await measure(io)
            for spawner in spawners:
                await self._judge(spawner, sizes)

    async def _judge(self, spawner, sizes):
        volume, quota = spawner.watched_home
        key = (spawner.user.name, spawner.name or "")
        used = sizes.get(volume)
        if used is None:
            self.log.warning("home watch: Docker reports no size for %s of %s", volume, spawner._log_name)
            return
        decision = watch_step(used, quota, self.states.get(key, WatchState()), self.clock(), spawner.home_watch_grace)
        self.states[key], self.usage[volume] = decision.state, (used, quota, self.clock(), key[0])
        if decision.notice:
            self.notices[key] = decision.notice
        else:
            self.notices.pop(key, None)
        if decision.changed:
            spawner.audit.write("home.watch", **spawner.audit_fields(
                volume=volume, step=decision.state.step, used=used, quota=quota, grace=spawner.home_watch_grace))
        if decision.stop:
            self.spawners.discard(spawner)
            self.log.warning("home watch: stopping %s: %s uses %d of %d bytes", spawner._log_name, volume, used, quota)
            await stop_server(spawner)
