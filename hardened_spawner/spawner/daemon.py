"""Facts about the Docker daemon that the invariants need: its data root, socket and default runtime.

Asked once per daemon and hub process (``docker info``); the socket's owning
group is read from the socket file when the hub can see it (a local daemon),
so ``group_add`` of that group, which is root on the host, is refused.
"""

import os

from docker.errors import DockerException
from requests.exceptions import RequestException

from ..decisions.invariants import Daemon
from . import clients


def socket_path(url):
    """The unix socket of a daemon address (``unix:///run/docker.sock``), or "" for TCP."""
    for prefix in ("unix://", "http+unix://"):
        if url.startswith(prefix):
            return "/" + url[len(prefix):].lstrip("/")
    return ""


def from_info(info, url, api_version):
    """:class:`Daemon` from ``docker info`` output (``{}`` when the daemon could not be asked)."""
    socket = socket_path(url)
    try:
        gid = os.stat(socket).st_gid if socket else None
    except OSError:
        gid = None
    return Daemon(root_dir=info.get("DockerRootDir") or "/var/lib/docker", socket=socket, socket_gid=gid,
                  default_runtime=info.get("DefaultRuntime") or "", api_version=api_version,
                  storage_driver=info.get("Driver") or "",
                  backing_fs=dict(info.get("DriverStatus") or ()).get("Backing Filesystem", ""))


async def daemon_facts(io, url):
    """The :class:`Daemon` at ``url`` (``io``: a :class:`~.clients.DockerIO`), asked once per process."""
    if url not in clients.daemons:
        info = await io("info")
        clients.daemons[url] = from_info(info, url, io.client.api_version)
    return clients.daemons[url]


def daemon_facts_now(client, url, timeout=3):
    """:class:`Daemon` for tools outside a hub: asks the daemon when it answers, else what the address says."""
    try:
        info = client.info() if client is not None else {}
    except (DockerException, RequestException, OSError):
        info = {}
    return from_info(info, url, getattr(client, "api_version", None) or Daemon().api_version)
