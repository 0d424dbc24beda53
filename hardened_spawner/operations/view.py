"""What the operations page shows, gathered from the hub's GPU pools, its servers, Docker and the audit history.

:func:`gather` does the I/O (one Docker listing per pool); :func:`leases`
and :func:`grid` turn the facts into rows and cells without any.
"""

import asyncio
import datetime
from dataclasses import dataclass

from ..decisions.container import LABEL_GPUS
from ..decisions.home_quota import HomeUsage, describe_usage, usage_level
from ..spawner import clients
from ..spawner.homes import measure_all
from ..telemetry.history import HISTORY, parse_ts

UTC = datetime.timezone.utc


def when(value, now):
    """``"2026-05-01 14:03 UTC (12 min ago)"`` for a datetime, ISO 8601 text, epoch seconds or None."""
    if isinstance(value, str):
        value = parse_ts(value)
    if value is None:
        return "—"
    if isinstance(value, (int, float)):
        value = datetime.datetime.fromtimestamp(value, UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = (now - value).total_seconds()
    ago = (f"in {_span(-seconds)}" if seconds < 0 else "just now" if seconds < 60 else f"{_span(seconds)} ago")
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({ago})"


def _span(seconds):
    minutes = seconds / 60
    if minutes < 1:
        return f"{seconds:.0f} s"
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


@dataclass
class Lease:
    pool: str
    holder: str
    gpus: tuple
    state: str          # held, pending, idle, stuck
    user: str = ""
    server: str = ""
    since: str = "—"
    hub_activity: str = "—"
    kernel_activity: str = "—"
    plan: str = ""      # what the reclaim policy will do
    problem: str = ""   # why the lease is stuck
    action: str = ""    # the release button's words


def _hub_servers(users):
    """``{container name: spawner}`` of every loaded server of the hub (Docker backend)."""
    found = {}
    for user in list(users.values()):
        for spawner in list(user.spawners.values()):
            name = getattr(spawner, "container_name", None)
            if name:
                found[name] = spawner
    return found


def leases(label, allocator, servers, containers, reclaimer, now):
    """The :class:`Lease` rows of one pool from its allocator, the hub's servers and Docker's containers."""
    rows = []
    for holder, holding in sorted(allocator.holdings().items()):
        spawner = servers.get(holder)
        container = containers.get(holder)
        running = bool(container and container.get("State") in ("running", "paused", "restarting"))
        row = Lease(label, holder, holding.gpus, "held", user=holding.owner)
        if spawner is not None:
            row.user, row.server = spawner.user.name, spawner.name or ""
            lease = spawner.gpu_lease or {}
            row.since = when(lease.get("since"), now)
            row.hub_activity = when(spawner.orm_spawner.last_activity, now)
            status = reclaimer.status.get((row.user, row.server))
            if status:
                activity, verdict = status
                source = "server" if activity.source == "server" else "hub's last-activity"
                row.kernel_activity = ("a kernel is running code" if activity.busy
                                       else f"{when(activity.last, now)} ({source})")
                if verdict.deadline and verdict.reason == "idle" and activity.busy:
                    row.plan = "not idle while code runs"
                elif verdict.deadline:
                    row.plan = f"{verdict.reason}: stop due {when(verdict.deadline, now)}"
                    row.state = "idle" if verdict.action != "keep" else row.state
        elif container:
            row.since = when(container.get("Created"), now)
        if spawner is not None and spawner.pending:
            row.state, row.problem = "pending", f"the server is {spawner.pending}ing"
        elif spawner is not None and spawner.active and running:
            row.action = "Stop the server and release"
        elif running:
            row.state, row.problem = "stuck", "Docker runs the container, but the hub has no server for it"
            row.action = "Remove the container and release"
        else:
            row.state = "stuck"
            row.problem = "no running container holds it" if holding.confirmed else "its start never finished"
            row.action = "Release"
        rows.append(row)
    return rows


def grid(allocator, rows):
    """``[(gpu id, state, [holder line, ...]), ...]`` for :func:`~.charts.occupancy_svg`."""
    by_holder = {row.holder: row for row in rows}
    order = ("stuck", "idle", "pending", "held")
    cells = []
    for gpu, holders in allocator.usage().items():
        mine = [by_holder[h] for h in holders if h in by_holder]
        if not mine:
            cells.append((gpu, "free", []))
            continue
        state = min((row.state for row in mine), key=order.index)
        cells.append((gpu, state, [f"{r.user}/{r.server}" if r.server else r.user or r.holder for r in mine]))
    return cells


async def gather(users, now=None):
    """Everything the page shows: ``pools`` (label, rows, cells), admissions, verdicts, denials."""
    now = now or datetime.datetime.now(UTC)
    servers = _hub_servers(users)
    pools = []
    for key, pool in sorted(clients.gpu_pools.items(), key=lambda kv: kv[0][0]):
        label = clients.pool_label(key)
        if pool.allocator is None:
            pools.append({"label": label, "key": key, "rows": [], "cells": [], "note": "not used since the hub started"})
            continue
        listed = await pool.io("containers", all=True, filters={"label": LABEL_GPUS})
        containers = {(c.get("Names") or ["/"])[0].lstrip("/"): c for c in listed}
        rows = leases(label, pool.allocator, servers, containers, clients.reclaimer(), now)
        pools.append({"label": label, "key": key, "rows": rows, "cells": grid(pool.allocator, rows), "note": ""})
    return {
        "now": now, "pools": pools,
        "admissions": HISTORY.recent_admissions(),
        "verdicts": HISTORY.image_verdicts(),
        "denials": HISTORY.denials_since(now - datetime.timedelta(hours=24)),
    }


async def homes(directory, watched):
    """``[(HomeUsage, level, words), ...]`` of every home with a quota: the filesystem ones (``home_quota_dir``)
    measured now, then the watched ones (``home_quota_mode = "watch"``) as the watcher last measured them:
    ``watched`` is its ``{volume: (bytes used, quota, when, user)}``."""
    found = await asyncio.get_running_loop().run_in_executor(clients.executor("io"), measure_all, directory)
    rows = [(usage, usage_level(usage), describe_usage(usage)) for usage in found]
    for volume, (used, quota, at, _) in sorted(watched.items()):
        usage = HomeUsage(volume, used, quota, 0, 0)
        measured = datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime("%H:%M UTC")
        rows.append((usage, usage_level(usage), f"{describe_usage(usage)}, watched, measured {measured}"))
    return rows
