"""Logical SSH targets: how users name their servers to the gateway. Pure.

Through the gateway a user reaches only their own servers. The host part
of the second hop is a logical name, never an address:

* ``<user>`` is the user's default server;
* ``<user>.<server>`` is their named server ``<server>``.

The gateway knows who authenticated, so the name is read relative to that
user: ``bob`` asked by ``alice`` is refused, whatever servers bob has.
"""

from ..decisions.ssh_names import logical_target

CONTAINER_SSH_PORT = 2222
# Ports a client may name: 22 (what ``ssh`` sends by default) or the sshd port.
TARGET_PORTS = (22, CONTAINER_SSH_PORT)


class TargetRefused(ValueError):
    """A forwarding request that names something other than the caller's own server."""


def jump_host(username, gateway_host, gateway_port):
    host = f"[{gateway_host}]" if ":" in gateway_host else gateway_host
    return f"{username}@{host}" + (f":{gateway_port}" if gateway_port != 22 else "")


def ssh_command(username, server_name, gateway_host, gateway_port, container_user):
    """The exact command a user runs to reach a server, e.g. ``ssh -J alice@hub:8022 jovyan@alice``."""
    return (f"ssh -J {jump_host(username, gateway_host, gateway_port)} "
            f"{container_user}@{logical_target(username, server_name)}")


def parse_target(username, dest_host, dest_port):
    """The server name ``dest_host`` refers to for ``username`` ("" = default server).

    Raises :class:`TargetRefused` with the reason for anything else. ssh
    lower-cases host names, so the comparison ignores case.
    """
    if dest_port not in TARGET_PORTS:
        raise TargetRefused(f"port {dest_port} is not SSH: use port 22 or {CONTAINER_SSH_PORT}")
    host, user = dest_host.lower(), username.lower()
    if host == user:
        return ""
    if host.startswith(user + ".") and len(host) > len(user) + 1:
        return dest_host[len(user) + 1:]
    raise TargetRefused(
        f"{dest_host!r} is not one of your servers: use {username!r} for your default server "
        f"or '{username}.<server name>' for a named one"
    )


GATEWAY_ALIAS = "jupyter-gateway"


def ssh_config(username, gateway_host, gateway_port, container_user, identity="~/.ssh/id_ed25519"):
    """An ``~/.ssh/config`` block: the gateway as a host of its own, the user's servers through it.

    Host keys are checked strictly on both hops: the gateway's is pinned
    (:func:`known_hosts_line`), and each server's is certified by the hub's host
    CA for the name typed (:func:`known_hosts_ca_lines`), although every start
    makes a new one.
    """
    return (f"Host {GATEWAY_ALIAS}\n"
            f"    HostName {gateway_host}\n"
            f"    Port {gateway_port}\n"
            f"    User {username}\n"
            f"    IdentityFile {identity}\n"
            f"    StrictHostKeyChecking yes\n"
            f"\n"
            f"# your servers: \"{username}\" (default) and \"{username}.<server name>\"\n"
            f"Host {username} {username}.*\n"
            f"    User {container_user}\n"
            f"    ProxyJump {GATEWAY_ALIAS}\n"
            f"    IdentityFile {identity}\n"
            f"    StrictHostKeyChecking yes\n")


def known_hosts_line(gateway_host, gateway_port, public_key):
    """The ``~/.ssh/known_hosts`` line pinning the gateway's host key (``type base64``)."""
    host = gateway_host if gateway_port == 22 else f"[{gateway_host}]:{gateway_port}"
    return f"{host} {' '.join(public_key.split()[:2])}"


def known_hosts_ca_lines(username, ca_public_keys):
    """``@cert-authority`` lines trusting the hub's host CA(s) for ``username``'s servers only
    (``alice`` and ``alice.*``), one per CA key (``type base64``)."""
    hosts = f"{username.lower()},{username.lower()}.*"
    return [f"@cert-authority {hosts} {' '.join(key.split()[:2])}" for key in ca_public_keys]
