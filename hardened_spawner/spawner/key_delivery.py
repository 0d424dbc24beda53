"""Writing validated keys into a created container through the Docker API (no file on the hub host).

The keys go to ``/etc/ssh/authorized_keys/<login>`` (root-owned, 0644), the
container's certified host key to ``.host/`` beside them (:mod:`..keys.host_certs`), in a
created, not yet started container, where sshd reads them; the login comes
from the plan (the admitted image's passwd). A read-only root refuses
``put_archive``: then the keys live in a per-server volume, mounted
read-only, written through a helper container that is created (never
started) with the volume. The writing is :mod:`..keys.live`'s, which also
rewrites the file of a running container when keys change.
"""

import asyncio

from docker.errors import APIError, NotFound

from ..keys.live import Target, write_keys


class KeyDelivery:
    """Docker-side key delivery. ``io`` is a :class:`~.clients.DockerIO`."""

    def __init__(self, io):
        self.io = io

    async def write(self, container_id, image_id, login, text, volume="", owner="", host_key=None, host_owner=(0, 0)):
        """Put ``text`` as ``login``'s keys into the container (or its keys ``volume``), with its certified
        ``host_key`` owned by ``host_owner`` (the uid and gid sshd runs as).

        Raises :class:`~..keys.live.LiveDeliveryError` saying why it could not (no sshd in the image)."""
        await self.io.run(write_keys, self.io.client, Target(container_id, image_id, login, volume), text, owner,
                          host_key, host_owner)

    async def remove_volume(self, volume, log):
        await remove_volume(self.io, volume, log, "SSH keys volume")


async def remove_volume(io, volume, log, what):
    """Remove a server's own named volume (gone already is fine); retried while Docker still removes
    the container that used it."""
    for attempt in range(10):  # 409 while Docker is still removing the container (auto_remove)
        try:
            await io("remove_volume", volume)
            return
        except NotFound:
            return
        except APIError as e:
            if e.status_code != 409 or attempt == 9:
                log.warning("could not remove %s %s: %s", what, volume, e)
                return
            await asyncio.sleep(0.3)
