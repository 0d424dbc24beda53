"""Homes the filesystem does not bound (``home_quota_mode = "watch"``): what the watcher does, on measured figures.

A plain Docker volume has no size: a write goes on until the disk under it is
full. The watcher (:mod:`..spawner.home_watch`) measures each running server's
home every ``home_watch_interval`` seconds (Docker's own figure, the volume's
``UsageData.Size`` of ``docker system df``) and :func:`watch_step` decides, in
steps: from :data:`~.home_quota.NEAR` of the quota a notice on the user's pages;
from the quota itself a notice that the server will be stopped, and new spawns
refused (:func:`spawn_refusal`); once over the quota for ``home_watch_grace``
seconds, or past :data:`HARD` times the quota at once, the server is stopped.
No file is ever deleted: the user's work stays, and a stop is what keeps the
rest of the disk for everyone else.
"""

from dataclasses import dataclass

from ..units import format_bytes
from .home_quota import NEAR

HARD = 1.1  # past this share of the quota the server is stopped at once, whatever the grace
STEPS = ("ok", "near", "over", "stop")


@dataclass(frozen=True)
class WatchState:
    """What the watcher remembers of one server's home between two looks."""

    step: str = "ok"
    over_since: float | None = None  # when its use first reached the quota (epoch seconds); None: it is below


@dataclass(frozen=True)
class WatchDecision:
    state: WatchState
    notice: str = ""       # what the user reads on the hub's pages ("": nothing to say)
    changed: bool = False  # the step is not the previous one: audited

    @property
    def stop(self):
        return self.state.step == "stop"


def _use(used, quota):
    return f"{format_bytes(used)} of its {format_bytes(quota)} quota ({used * 100 // quota}%)"


def watch_step(used, quota, previous, now, grace):
    """The :class:`WatchDecision` for a home using ``used`` of ``quota`` bytes at ``now`` (epoch seconds),
    after ``previous`` (a :class:`WatchState`), with ``grace`` seconds allowed over the quota."""
    share = used / quota
    if share < NEAR:
        state, notice = WatchState("ok"), ""
    elif share < 1:
        state = WatchState("near")
        notice = (f"Your home uses {_use(used, quota)}. At the quota your server is stopped and new servers "
                  "are refused until you make room: delete or move files you do not need.")
    else:
        since = previous.over_since if previous.over_since is not None else now
        left = since + grace - now
        if share >= HARD or left <= 0:
            state = WatchState("stop", since)
            notice = (f"Your server was stopped because your home used {_use(used, quota)}"
                      + (f", more than {int(HARD * 100)}% of it" if share >= HARD else
                         f" for longer than {_duration(grace)}")
                      + ". No file was deleted. A new server starts once the home is below the quota: "
                      "pick a profile with a bigger home, or ask the hub admin to make room or raise it.")
        else:
            state = WatchState("over", since)
            notice = (f"Your home uses {_use(used, quota)}: your server will be stopped in "
                      f"{_duration(left)} unless you delete or move files (nothing is deleted for you).")
    return WatchDecision(state, notice, changed=state.step != previous.step)


def level(used, quota):
    """``"ok"`` (below 90%), ``"near"`` or ``"over"`` (at or over the quota): the metrics' label."""
    return "over" if used >= quota else "near" if used >= NEAR * quota else "ok"


def spawn_refusal(volume, used, quota):
    """Why a server with this home may not start ("": it may): its use is at or over the profile's quota."""
    if used < quota:
        return ""
    return (f"Your home {volume} uses {_use(used, quota)}, so no server starts with it: a full home would "
            "fill the disk other users' servers share. Nothing was deleted. Pick a profile with a bigger home, "
            "or ask the hub admin to make room or raise your quota.")


def _duration(seconds):
    seconds = max(int(seconds), 0)
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min"


def watch_problems(setting, profiles):
    """A watched home counts bytes only (Docker reports no file counts): ``home_files`` needs the filesystem."""
    return [(setting, f"profile {p.slug!r} has home_files {p.limits.home_files}, but a watched home counts "
                      "bytes only; remove home_files or set home_quota_mode = 'filesystem'")
            for p in profiles if p.limits.home_files]
