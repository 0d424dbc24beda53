"""Wire the SSH gateway and the SSH keys service into a hub configuration (used by ``jupyterhub_config.py``)."""

import os
import sys

from ..keys.targets import known_hosts_ca_lines, known_hosts_line, ssh_command, ssh_config
from ..pages.access import SCOPE as ACCESS_SCOPE
from ..pages.access import SCOPE_DEFINITION as ACCESS_SCOPE_DEFINITION
from .keys_access import CUSTOM_SCOPES, MANAGE, READ

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
SERVICE_NAME = "ssh-gateway"
KEYS_SERVICE = "ssh-keys"
PASSED_PREFIXES = ("HS_", "DOCKER_", "VAULT_")
PASSED_NAMES = ("HOME", "LANG", "LC_ALL", "PATH", "PYTHONPATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
                "REQUESTS_CA_BUNDLE", "TZ")


def hub_config_file(fallback):
    """The configuration file the running hub loaded, else ``fallback`` (absolute)."""
    app = sys.modules.get("jupyterhub.app")
    if app is not None and app.JupyterHub.initialized():
        return os.path.abspath(app.JupyterHub.instance().config_file)
    return os.path.abspath(fallback)


def _environment(prefixes=PASSED_PREFIXES):
    return {k: v for k, v in os.environ.items() if k.startswith(prefixes) or k in PASSED_NAMES}


def gateway_service(config_file, keys_url):
    """The gateway's entry for ``c.JupyterHub.services``.

    The gateway reads the same configuration file as the hub (its own section
    and the audit settings), so it gets the variables that file may read
    (``HS_*``, ``DOCKER_*`` and the usual system ones), but not ``VAULT_*``:
    it asks the SSH keys service at ``keys_url`` for users' keys and holds no
    key-store credentials.
    """
    return {
        "name": SERVICE_NAME,
        "command": [sys.executable, "-m", "hardened_spawner.ssh.gateway", "--config", config_file,
                    f"--keys-url={keys_url}"],
        "environment": _environment(("HS_", "DOCKER_")),
    }


def gateway_role(start_servers=False):
    """The gateway's role: read servers and their state (the sshd address), every user's public keys
    (from the keys service); start servers if allowed."""
    scopes = ["read:servers", "admin:server_state", READ, f"access:services!service={KEYS_SERVICE}", ACCESS_SCOPE]
    scopes += ["start:servers"] if start_servers else []
    return {"name": SERVICE_NAME, "scopes": scopes, "services": [SERVICE_NAME]}


def keys_service(config_file, url):
    """The SSH keys service's entry for ``c.JupyterHub.services``; it listens at ``url`` (loopback).

    It logs users in through the hub: its OAuth tokens carry the user's own
    ``custom:ssh-keys:manage`` and, for admins, ``admin:users`` (whoever may
    administer a user may manage their keys).
    """
    return {
        "name": KEYS_SERVICE,
        "url": url,
        "command": [sys.executable, "-m", "hardened_spawner.ssh.keys_service", "--config", config_file],
        "environment": _environment(),
        "oauth_client_allowed_scopes": [MANAGE, "admin:users"],
        "oauth_no_confirm": True,
    }


def keys_role(auth_state=False):
    """The keys service's role: users' servers and their state (to deliver keys live); whether a user
    may still log in (before a user certificate is issued); their auth_state too when keys come from
    the identity provider (IdPKeyStore)."""
    scopes = ["read:servers", "admin:server_state", ACCESS_SCOPE] + (["admin:auth_state"] if auth_state else [])
    return {"name": KEYS_SERVICE, "scopes": scopes, "services": [KEYS_SERVICE]}


def keys_scopes(c):
    """Define the SSH keys scopes and let every user manage their own keys and open the page."""
    c.JupyterHub.custom_scopes.update({**CUSTOM_SCOPES, **ACCESS_SCOPE_DEFINITION})
    c.JupyterHub.extra_user_scopes.update({f"{MANAGE}!user", f"access:services!service={KEYS_SERVICE}"})


class HomeSSH:
    """What the home page shows a user about SSH (``hs_ssh`` in the templates)."""

    def __init__(self, user, gateway_host, gateway_port, container_user, host_key_file, keys_page):
        self.user = user
        self.command = ssh_command(user.name, "", gateway_host, gateway_port, container_user)
        self.named = ssh_command(user.name, "SERVER", gateway_host, gateway_port, container_user)
        self.config = ssh_config(user.name, gateway_host, gateway_port, container_user)
        self.keys_page = keys_page
        self.host_key, self.known_hosts = _host_key(host_key_file, gateway_host, gateway_port)
        self.host_ca = "\n".join(known_hosts_ca_lines(user.name, _host_ca_keys(user)))

    async def keys(self):
        """The user's keys that will work now, read as a spawn reads them (see :mod:`.home_keys`)."""
        from .home_keys import working_keys

        return await working_keys(self.user)


def _host_key(path, gateway_host, gateway_port):
    """``(SHA256 fingerprint, known_hosts line)`` of the gateway's host key, or ``("", "")`` before it exists."""
    from ..keys.sshlib import asyncssh

    try:
        with open(path + ".pub") as f:
            public = f.read().strip()
        key = asyncssh.import_public_key(public)
    except (OSError, ValueError, asyncssh.KeyImportError):
        return "", ""
    return key.get_fingerprint("sha256"), known_hosts_line(gateway_host, gateway_port, public)


def _host_ca_keys(user):
    """Public keys of the host CAs the user's servers are certified by (none without a HardenedSpawner)."""
    from ..spawner import HardenedSpawner

    spawner = getattr(user, "spawner", None)
    return spawner.ssh_host_ca_lines() if isinstance(spawner, HardenedSpawner) else []


def ssh_template_vars(gateway_host, gateway_port, container_user="jovyan", host_key_file="",
                      keys_page=f"/services/{KEYS_SERVICE}/"):
    """``c.JupyterHub.template_vars`` entries for the home page's SSH section."""

    def hs_ssh(user):
        if user is None or not gateway_host:
            return None
        return HomeSSH(user, gateway_host, gateway_port, container_user, host_key_file, keys_page)

    return {"hs_ssh": hs_ssh}
