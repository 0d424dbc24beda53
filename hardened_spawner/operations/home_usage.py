"""The user's own home use and quota on the hub's home page (``hs_home_usage``), for both kinds of quota.

A filesystem home (``home_quota_mode = "filesystem"``, an ext4 image) is measured
when the page is rendered, on the I/O threads (``statvfs`` while mounted, its
superblock while not). A watched home shows the last measurement of the watcher
or of a spawn: Docker's ``df`` walks every volume, too much for each page view.
"""

import asyncio
import datetime
import os

from ..decisions.home_quota import HomeUsage, describe_usage
from ..spawner import clients
from ..spawner.docker import HardenedDockerSpawner
from ..spawner.homes import home_volume, measure


class HomeUsageView:
    def __init__(self, spawner):
        self.spawner = spawner

    async def text(self):
        """``"Your home: 58 MiB of 64 MiB (90%), measured 22:40 UTC."``, or "" (no quota, nothing known)."""
        spawner = self.spawner
        if not any(p.limits.home for p in spawner.profile_catalog()[0]):
            return ""
        volume = home_volume(spawner.volume_binds, spawner.notebook_dir, f"{spawner.setting_prefix}volumes")
        if spawner.home_quota_mode == "watch":
            seen = clients.home_watcher().usage.get(volume)
            if seen is None:
                return ""
            used, quota, at, _ = seen
            when = datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime("%H:%M UTC")
            return f"Your home: {describe_usage(HomeUsage(volume, used, quota, 0, 0))}, measured {when}."
        image = os.path.join(spawner.home_quota_dir, f"{volume}.ext4")
        if not os.path.exists(image):
            return ""
        usage = await asyncio.get_running_loop().run_in_executor(clients.executor("io"), measure, image, volume)
        return "" if usage.error else f"Your home: {describe_usage(usage)}."


def home_usage(user):
    """The ``hs_home_usage`` template variable: a :class:`HomeUsageView` of the user's default server, or None."""
    spawner = getattr(user, "spawner", None) if user is not None else None
    return HomeUsageView(spawner) if isinstance(spawner, HardenedDockerSpawner) else None
