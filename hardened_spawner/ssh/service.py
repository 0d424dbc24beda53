"""Wire the SSH gateway into a hub configuration (used by ``jupyterhub_config.py``)."""

import os
import sys

from ..keys.targets import ssh_command

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
SERVICE_NAME = "ssh-gateway"
PASSED_PREFIXES = ("HS_", "DOCKER_", "VAULT_")
PASSED_NAMES = ("HOME", "LANG", "LC_ALL", "PATH", "PYTHONPATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
                "REQUESTS_CA_BUNDLE", "TZ")


def hub_config_file(fallback):
    """The configuration file the running hub loaded, else ``fallback`` (absolute)."""
    app = sys.modules.get("jupyterhub.app")
    if app is not None and app.JupyterHub.initialized():
        return os.path.abspath(app.JupyterHub.instance().config_file)
    return os.path.abspath(fallback)


def gateway_service(config_file):
    """The managed service entry for ``c.JupyterHub.services``.

    The gateway reads the same configuration file as the hub, so it gets the
    variables that file may read (``HS_*``, ``DOCKER_*``, ``VAULT_*`` and the
    usual system ones) to evaluate it the same way.
    """
    environment = {k: v for k, v in os.environ.items() if k.startswith(PASSED_PREFIXES) or k in PASSED_NAMES}
    return {
        "name": SERVICE_NAME,
        "command": [sys.executable, "-m", "hardened_spawner.ssh.gateway", "--config", config_file],
        "environment": environment,
    }


def gateway_role(start_servers=False):
    """The gateway's role: read servers and their state (the sshd address); start them if allowed."""
    scopes = ["read:servers", "admin:server_state"] + (["start:servers"] if start_servers else [])
    return {"name": SERVICE_NAME, "scopes": scopes, "services": [SERVICE_NAME]}


def ssh_template_vars(gateway_host, gateway_port, container_user="jovyan"):
    """``c.JupyterHub.template_vars`` entries: the ssh command shown on the home page."""

    def hs_ssh(user):
        if user is None or not gateway_host:
            return None
        return {
            "command": ssh_command(user.name, "", gateway_host, gateway_port, container_user),
            "named": ssh_command(user.name, "SERVER", gateway_host, gateway_port, container_user),
        }

    return {"hs_ssh": hs_ssh}
