"""Prove that a server network keeps containers apart, with two probe containers.

Docker enforces both network layouts (:mod:`.networks`) with iptables; a
daemon run with ``--iptables=false`` keeps every setting and enforces none.
The settings cannot tell, so the hub tries what an attacker would:

1. probe **A** listens on a TCP port on the server network;
2. the hub connects to it, the path the proxy and the SSH gateway take (if
   that fails the network is useless and the proof says nothing: refused);
3. probe **B**, on the same network (shared layout) or on another network made
   the same way (per-user layout), connects to A's address. It must fail.

The probes run the admitted image of the spawn (it has the Python the
notebook server needs) with no capabilities, no-new-privileges, a read-only
root, uid 65534, small limits and a label; they are removed whatever happens,
and a hub killed mid-proof leaves them to :func:`sweep` (run before each proof).
"""

import asyncio
import secrets
import time
from datetime import datetime, timezone

from docker.errors import APIError, NotFound

from ..decisions.container import LABEL_PREFIX, NO_NEW_PRIVILEGES

PROBE_LABEL = LABEL_PREFIX + "isolation-probe"
PORT = 47211
STALE_SECONDS = 300
REACH_SECONDS = 20.0   # how long the hub keeps trying to reach A (start-up on a loaded host)
ANSWER = b"hs-isolation-probe\n"

_LISTEN = ("import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
           f"s.bind(('0.0.0.0', {PORT}))\ns.listen(16)\nwhile True:\n    c, _ = s.accept()\n"
           f"    c.sendall({ANSWER!r})\n    c.close()\n")
_CONNECT = ("import socket, sys\ntry:\n    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)\n"
            "    print('REACHED', c.recv(64))\nexcept OSError as e:\n    print('BLOCKED', e)\n")
_PYTHON = 'exec "$(command -v python3 || command -v python)" -c "$0" "$@"'


class IsolationProbe:
    """``io``: a :class:`~.clients.DockerIO`; ``log``: the spawner's logger."""

    def __init__(self, io, log):
        self.io = io
        self.log = log

    async def run(self, image, network, other):
        """None when a container on ``other`` cannot reach one on ``network`` (inspect outputs), else why."""
        await self.io.run(sweep, self.io.client)
        made = []
        try:
            listener = await self._start(image, network["Name"], _LISTEN, (), made)
            address = await self._address(listener, network["Name"])
            if not await self._hub_reaches(address):
                return (f"the hub itself cannot reach a container on it ({address}:{PORT}), so neither can the "
                        "proxy; is the hub's container on the network (network_peers)?")
            prober = await self._start(image, other["Name"], _CONNECT, (address, str(PORT)), made)
            verdict = await self._verdict(prober)
            if verdict.startswith("REACHED"):
                where = "the same network" if other["Id"] == network["Id"] else f"network {other['Name']!r}"
                return f"a probe container on {where} reached a probe container on it at {address}:{PORT}"
            if not verdict.startswith("BLOCKED"):
                return f"the probe gave no verdict ({verdict[:200]!r})"
            return None
        finally:
            for container in made:
                try:
                    await self.io("remove_container", container, force=True)
                except APIError as e:
                    self.log.warning("isolation probe %s not removed: %s", container[:12], e)

    async def _start(self, image, network, code, args, made):
        host = self.io.client.create_host_config(
            network_mode=network, cap_drop=["ALL"], security_opt=[NO_NEW_PRIVILEGES], read_only=True,
            mem_limit=64 * 1024 * 1024, pids_limit=16, nano_cpus=250_000_000)
        created = await self.io(
            "create_container", image, entrypoint=["/bin/sh", "-c", _PYTHON], command=[code, *args],
            user="65534:65534", labels={PROBE_LABEL: "true"}, host_config=host,
            name=f"hs-isolation-probe-{secrets.token_hex(4)}")
        made.append(created["Id"])
        await self.io("start", created["Id"])
        return created["Id"]

    async def _address(self, container, network):
        info = await self.io("inspect_container", container)
        return ((info.get("NetworkSettings") or {}).get("Networks") or {})[network]["IPAddress"]

    async def _hub_reaches(self, address):
        deadline = time.monotonic() + REACH_SECONDS
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(address, PORT), 3)
                answer = await asyncio.wait_for(reader.read(64), 3)
                writer.close()
                if answer == ANSWER:
                    return True
            except (OSError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.3)
        return False

    async def _verdict(self, container):
        await self.io("wait", container, timeout=30)
        return (await self.io("logs", container, stdout=True, stderr=True)).decode(errors="replace").strip()


def sweep(client, now=None):
    """Remove probe containers and networks older than ``STALE_SECONDS`` (left by a hub that died mid-proof)."""
    now = now or time.time()
    for c in client.containers(all=True, filters={"label": f"{PROBE_LABEL}=true"}):
        if now - c.get("Created", now) > STALE_SECONDS:
            try:
                client.remove_container(c["Id"], force=True)
            except (NotFound, APIError):
                pass
    for n in client.networks(filters={"label": f"{PROBE_LABEL}=true"}):
        created = datetime.fromisoformat(n["Created"][:19]).replace(tzinfo=timezone.utc).timestamp()
        if now - created > STALE_SECONDS:
            try:
                client.remove_network(n["Id"])
            except (NotFound, APIError):
                pass
