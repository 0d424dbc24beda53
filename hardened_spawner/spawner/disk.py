"""The free-space check of a spawn (``min_free_disk``): measure, then let :mod:`..decisions.disk` decide.

Runs in the spawn's ``profile`` phase, with the daemon's facts, before anything
is pulled or created. The filesystem measured is the Docker data root as the
daemon reports it (``DockerRootDir``), or ``min_free_disk_path`` when the hub
sees that filesystem under another path.
"""

import os

from ..decisions.disk import FreeSpace, free_space_verdict
from ..errors import SpawnRefused
from ..units import parse_bytes
from . import clients
from .daemon import daemon_facts


def measure(path):
    """:class:`FreeSpace` of the filesystem holding ``path``, or why it cannot be measured."""
    try:
        st = os.statvfs(path)
    except OSError as e:
        return FreeSpace(path, error=e.strerror or str(e))
    return FreeSpace(path, free=st.f_bavail * st.f_frsize, total=st.f_blocks * st.f_frsize)


class DiskGuard:
    """Mixed into the spawn pipeline: the daemon's facts, and the free-space check."""

    async def daemon_facts(self):
        return await daemon_facts(self.docker_io, clients.docker_url(self.client_kwargs))

    async def check_free_disk(self, daemon):
        """Refuse (``disk-low``) when the data root's filesystem is below ``min_free_disk``. Run once the
        profile is chosen and before anything is pulled: the measurement is a thread-pool call, and a user's
        bad options are refused at once without waiting for it (the API answers 400, not 202)."""
        setting = f"{self.setting_prefix}min_free_disk"
        minimum = parse_bytes(self.min_free_disk)  # checked at hub start (config_problems)
        if minimum:
            space = await self.docker_io.run(measure, self.min_free_disk_path or daemon.root_dir)
            verdict = free_space_verdict(minimum, space, setting)
            if verdict.warning:
                self.log.warning("%s: %s", self._log_name, verdict.warning)
            if verdict.refused:
                raise SpawnRefused(verdict.message, reason="disk-low", detail=verdict.detail)
