"""The gateway's view of the Hub: where a user's server accepts SSH.

Uses the Hub REST API with the gateway service's token (scopes
``read:servers`` and ``admin:server_state``, plus ``start:servers`` when the
gateway may start servers). The address comes from the server's state
(``ssh_host``, recorded by the spawner when it delivered keys), never from the
client.
"""

import asyncio
import ipaddress
import json
import time
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from ..keys.targets import CONTAINER_SSH_PORT, TargetRefused


class HubAPI:
    def __init__(self, url, token, timeout=10.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    async def request(self, method, path, body=None):
        """``(status, parsed JSON or None)``; connection errors raise ``TargetRefused``."""
        request = HTTPRequest(
            self.url + path, method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body), request_timeout=self.timeout,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as e:
            raise TargetRefused(f"the hub is unreachable ({e.strerror or e})") from None
        if response.code == 599:
            raise TargetRefused(f"the hub did not answer ({response.error})")
        try:
            data = json.loads(response.body) if response.body else None
        except ValueError:
            data = None
        return response.code, data

    async def user(self, username):
        """The user's model (servers with their state, stopped ones included; auth_state when the
        token may read it), or None when there is no such user."""
        code, data = await self.request("GET", f"/users/{quote(username, safe='')}?include_stopped_servers=1")
        if code == 404:
            return None
        if code != 200:
            raise TargetRefused(f"the hub refused to look up {username!r} (HTTP {code}); tell the hub admin")
        return data or {}

    async def access(self, username):
        """``(allowed, reason)``: whether the hub still lets ``username`` in (not blocked, not revoked).

        Fails closed: a hub that cannot answer (or lacks the access API) refuses.
        """
        code, data = await self.request("GET", f"/hardened-spawner/access/{quote(username, safe='')}")
        if code == 200 and isinstance(data, dict):
            return bool(data.get("allowed")), data.get("reason") or ""
        if code == 404 and isinstance(data, dict) and "no user" in str(data.get("message")):
            return False, f"there is no JupyterHub user {username!r}"
        return False, (f"the hub did not say whether {username} may log in (HTTP {code}); "
                       "tell the hub admin (the authenticator needs hardened_spawner's access API)")

    async def servers(self, username):
        """The user's servers (stopped ones included), or None when there is no such user."""
        model = await self.user(username)
        return None if model is None else (model.get("servers") or {})

    async def start(self, username, server_name):
        name = quote(username, safe="")
        path = f"/users/{name}/servers/{quote(server_name, safe='')}" if server_name else f"/users/{name}/server"
        code, data = await self.request("POST", path, {})
        if code not in (201, 202, 400):  # 400: already running or pending, which is fine
            message = (data or {}).get("message") or f"HTTP {code}"
            raise TargetRefused(f"the hub could not start the server: {message}")


def describe(username, server_name):
    return f"{username}'s server {server_name!r}" if server_name else f"{username}'s default server"


def find_server(servers, server_name):
    """``(name, model)`` of the server called ``server_name`` (ssh lower-cases host names)."""
    if server_name in servers:
        return server_name, servers[server_name]
    for name, model in servers.items():
        if name.lower() == server_name.lower():
            return name, model
    return server_name, None


def ssh_address(model, label):
    """``(host, port)`` of a ready server's sshd, from its state; ``TargetRefused`` otherwise."""
    state = model.get("state") or {}
    host = state.get("ssh_host")
    if not host:
        raise TargetRefused(f"{label} cannot take SSH keys: its image has no sshd, or it started "
                            "before SSH was set up on this hub (restart it)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise TargetRefused(f"{label} has no valid SSH address; tell the hub admin") from None
    return host, int(state.get("ssh_port") or CONTAINER_SSH_PORT)


async def resolve(hub, username, server_name, start=False, start_timeout=120.0, poll=0.5):
    """Where ``username``'s server ``server_name`` accepts SSH, starting it if allowed."""
    servers = await hub.servers(username)
    if servers is None:
        raise TargetRefused(f"there is no JupyterHub user {username!r}")
    name, model = find_server(servers, server_name)
    label = describe(username, name)
    if model is None and name:
        raise TargetRefused(f"{username} has no server named {server_name!r}")
    if model and model.get("ready"):
        return ssh_address(model, label)
    if not start:
        state = "still starting" if model and model.get("pending") == "spawn" else "not running"
        raise TargetRefused(f"{label} is {state}: start it from the hub, then connect again")
    await hub.start(username, name)
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(poll)
        _, model = find_server(await hub.servers(username) or {}, name)
        if model and model.get("ready"):
            return ssh_address(model, label)
        if model is None or (model.get("stopped") and not model.get("pending")):
            raise TargetRefused(f"{label} failed to start; see the hub's spawn page for the reason")
    raise TargetRefused(f"{label} did not start within {start_timeout:g} s")
