"""Writing validated keys into a container through the Docker API (no file on the hub host).

The keys go to ``/etc/ssh/authorized_keys/<login>`` (root-owned, 0644) in a
created, not yet started container, where sshd reads them. A read-only root
refuses ``put_archive``, and so does a read-only mount: then the keys live
in a per-server volume, mounted read-only, written through a helper
container that is created (never started) with the volume.
"""

import asyncio

from docker.errors import APIError, NotFound

from ..keys.delivery import KEYS_DIR, container_user_name, file_from_archive, keys_archive

LABEL_KEYS_HELPER = "hardened-spawner.ssh-keys-helper"


class KeyDelivery:
    """Docker-side key delivery. ``io`` is a :class:`~.clients.DockerIO`; ``logins`` a process-wide dict."""

    def __init__(self, io, logins):
        self.io = io
        self.logins = logins

    async def login_name(self, image_id, user_spec, container):
        """The login name of ``user_spec`` in image ``image_id`` (cached per image), or None.

        ``container`` is an async callable giving the id of a created container of
        that image to read /etc/passwd from; it is only called on a cache miss.
        """
        key = (image_id, user_spec)
        if key not in self.logins:
            container_id = await container()
            try:
                stream, _ = await self.io("get_archive", container_id, "/etc/passwd")
                passwd = file_from_archive(await self.io.run(b"".join, stream)).decode("utf-8", "replace")
            except (NotFound, ValueError):
                return None
            self.logins[key] = container_user_name(passwd, user_spec)
        return self.logins[key]

    async def write(self, container_id, login, text, volume=None, image=None, owner=""):
        """Put ``text`` as ``login``'s keys into the container, or into ``volume`` through a helper.

        Raises ``NotFound`` when the image has no ``KEYS_DIR`` (no sshd)."""
        archive = keys_archive(login, text)
        if volume is None:
            return await self.io("put_archive", container_id, KEYS_DIR, archive)
        client = self.io.client
        host_config = client.create_host_config(
            binds={volume: {"bind": KEYS_DIR, "mode": "rw"}},
            network_mode="none", cap_drop=["ALL"], security_opt=["no-new-privileges:true"],
        )
        helper = await self.io("create_container", image, command=["true"], network_disabled=True,
                               labels={LABEL_KEYS_HELPER: owner}, host_config=host_config)
        try:
            return await self.io("put_archive", helper["Id"], KEYS_DIR, archive)
        finally:
            await self.io("remove_container", helper["Id"], force=True)

    async def remove_volume(self, volume, log):
        for attempt in range(10):  # 409 while Docker is still removing the container (auto_remove)
            try:
                await self.io("remove_volume", volume)
                return
            except NotFound:
                return
            except APIError as e:
                if e.status_code != 409 or attempt == 9:
                    log.warning("could not remove SSH keys volume %s: %s", volume, e)
                    return
                await asyncio.sleep(0.3)
