"""Reclaiming GPUs: when a GPU server is stopped for idleness or age, and what its user reads. Pure.

A profile's :class:`ReclaimPolicy` says after how many minutes without
kernel activity a server holding GPUs is stopped (``idle_minutes``), how old
its lease may grow whatever it does (``max_age_minutes``), and how long
before either the user is warned (``warn_minutes``). :func:`judge` turns
the facts of one lease into keep, warn or reclaim; a server is reclaimed
only after its user was warned at least ``warn_minutes`` earlier, so a hub
that restarts late never stops a server without a warning first.
"""

import datetime
from dataclasses import dataclass

_MINUTE = datetime.timedelta(minutes=1)


@dataclass(frozen=True)
class ReclaimPolicy:
    idle_minutes: float = 0.0     # 0: never stopped for idleness
    max_age_minutes: float = 0.0  # 0: no maximum age
    warn_minutes: float = 10.0

    @property
    def active(self):
        return self.idle_minutes > 0 or self.max_age_minutes > 0

    def describe(self):
        """``"freed after 30 min without kernel activity, and after 8 h at the latest"`` ('' when inactive)."""
        parts = []
        if self.idle_minutes:
            parts.append(f"after {_span(self.idle_minutes)} without kernel activity")
        if self.max_age_minutes:
            parts.append(f"after {_span(self.max_age_minutes)} at the latest")
        return ("freed " + ", and ".join(parts)) if parts else ""


@dataclass(frozen=True)
class Activity:
    """Facts about one lease: when it began, the newest kernel or terminal activity, and whether a kernel runs code now.

    ``source`` is ``server`` (the server's own report) or ``hub`` (the hub's
    last-activity, used when the server cannot be asked).
    """

    since: datetime.datetime
    last: datetime.datetime | None = None
    busy: bool = False
    source: str = "server"


@dataclass(frozen=True)
class Judgement:
    action: str                        # keep, warn or reclaim
    reason: str = ""                   # idle or max-age
    deadline: datetime.datetime | None = None
    active_at: datetime.datetime | None = None  # the activity the idle deadline counts from


def judge(policy, activity, now, warned_at=None):
    """Keep, warn or reclaim the lease described by ``activity`` at ``now``.

    ``warned_at``: when this lease's user was warned (None: not yet).
    """
    active_at = now if activity.busy else max(t for t in (activity.since, activity.last) if t is not None)
    deadlines = []
    if policy.idle_minutes > 0:
        deadlines.append((active_at + policy.idle_minutes * _MINUTE, "idle"))
    if policy.max_age_minutes > 0:
        deadlines.append((activity.since + policy.max_age_minutes * _MINUTE, "max-age"))
    if not deadlines:
        return Judgement("keep", active_at=active_at)
    deadline, reason = min(deadlines)
    warn_for = max(policy.warn_minutes, 0.0) * _MINUTE
    if now >= deadline and (not warn_for or (warned_at is not None and now - warned_at >= warn_for)):
        return Judgement("reclaim", reason, deadline, active_at)
    if now >= deadline - warn_for:
        return Judgement("warn", reason, deadline, active_at)
    return Judgement("keep", reason, deadline, active_at)


def _span(minutes):
    if minutes >= 120 and minutes % 60 == 0:
        return f"{minutes / 60:g} h"
    if minutes < 1:
        return f"{minutes * 60:g} s"
    return f"{minutes:g} min"


def _clock(when):
    return when.astimezone(datetime.timezone.utc).strftime("%H:%M UTC")


def gpu_names(gpus):
    """``"GPU 0, GPU 1"`` for indexes; a UUID-like id is its own name."""
    return ", ".join(g if g.upper().startswith("GPU") else f"GPU {g}" for g in gpus)


def _server(server):
    return f"Your server {server!r}" if server else "Your server"


def warning_text(server, gpus, judgement, policy, now):
    """What the user reads on the hub's pages while their server is due to be stopped."""
    held = f"holds {gpu_names(gpus)}" if gpus else "holds a GPU"
    at = max(judgement.deadline, now + max(policy.warn_minutes, 0.0) * _MINUTE)
    if judgement.reason == "idle":
        why = (f"{_server(server)} {held} and its kernels have been idle since {_clock(judgement.active_at)}: "
               f"it will be stopped at about {_clock(at)} to free the GPU for others, unless a kernel runs code "
               "before then.")
    else:
        why = (f"{_server(server)} {held}; servers of its profile may hold a GPU for at most "
               f"{_span(policy.max_age_minutes)}, so it will be stopped at about {_clock(at)}.")
    return why + " Save your work; your files are kept."


def stopped_text(server, gpus, reason, policy, now):
    """What the user reads after the hub stopped their server to free its GPU."""
    freed = gpu_names(gpus) if gpus else "its GPU"
    if reason == "idle":
        why = f"its kernels had been idle for {_span(policy.idle_minutes)}"
    else:
        why = f"it had held a GPU for {_span(policy.max_age_minutes)}, the most its profile allows"
    return (f"{_server(server)} was stopped at {_clock(now)} because {why}; {freed} went back to the pool. "
            "Your files are kept: start it again when you need the GPU.")
