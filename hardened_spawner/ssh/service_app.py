"""What the hub's SSH services share: the hub's configuration file, the Hub API, a life tied to the hub.

The SSH gateway and the SSH keys service are JupyterHub managed services.
Each reads the same configuration file as the hub (so the key store, the key
policy and the audit settings are declared once, on the spawner), gets its
API token from JupyterHub, and stops when the hub that started it is gone
(killed hard, the hub cannot stop its services).
"""

import asyncio
import contextlib
import logging
import os
import signal

from traitlets import Unicode, default
from traitlets.config import Application

from .. import audit
from ..audit import AuditLog
from ..spawner import configured_settings
from ..telemetry.forward import HubForwarder


class HubServiceApp(Application):
    """Base of the SSH services: configuration, Hub API access, parent watch."""

    config_file = Unicode(
        "jupyterhub_config.py", config=True,
        help="The hub's configuration file; the service reads the key store, key policy and audit settings there.",
    )
    hub_api_url = Unicode(config=True, help="Hub API URL. Default: ``$JUPYTERHUB_API_URL``.")
    api_token = Unicode(config=True, help="The service's API token. Default: ``$JUPYTERHUB_API_TOKEN``.")

    @default("log_level")
    def _default_log_level(self):
        return logging.INFO

    @default("log_datefmt")
    def _default_log_datefmt(self):
        return "%Y-%m-%d %H:%M:%S"

    @default("hub_api_url")
    def _default_hub_api_url(self):
        return os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")

    @default("api_token")
    def _default_api_token(self):
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    def load_hub_config(self, argv):
        """Parse the command line, then load the hub's configuration file; the command line wins."""
        self.parse_command_line(argv)
        cli_config = self.config
        path = os.path.abspath(self.config_file)
        self.load_config_file(os.path.basename(path), os.path.dirname(path))
        self.update_config(cli_config)

    def hub_settings(self, name):
        """The hub's spawner settings (key store, key policy, audit, Docker client)."""
        return configured_settings(self.config, name)

    def audit_log(self, settings):
        """The hub's audit file, and the hub itself: records are forwarded for its metrics and events."""
        audit.add_sink(HubForwarder(self.hub_api_url, self.api_token, log=self.log))
        return AuditLog(settings.audit_log_file, self.log if settings.audit_to_hub_log else None)

    async def watch_parent(self, stop):
        """Set ``stop`` when the hub that started us is gone."""
        parent = os.getppid()
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
            if os.getppid() != parent:
                self.log.warning("the hub (pid %s) is gone: stopping %s", parent, self.description)
                stop.set()

    def stop_event(self):
        """An event set by SIGTERM or SIGINT (call inside the running loop)."""
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        return stop
