"""The SSH keys service: users manage their own SSH public keys; running servers get them live.

Run by JupyterHub as a managed service (``keys_service()`` in
:mod:`.service`)::

    python -m hardened_spawner.ssh.keys_service --config /etc/jupyterhub/jupyterhub_config.py

It reads the hub's configuration file (the key store, the key policy, the
audit log and the Docker client settings come from the spawner's section),
logs users in through the hub (OAuth), and serves the "SSH keys" page and
its REST API (:mod:`.keys_web`). It is also where the SSH gateway asks for a
user's keys, so the gateway holds no key-store credentials. It needs Docker
access (to rewrite keys in running containers) and, with keys from the
identity provider, the ``admin:auth_state`` scope; the gateway, which faces
users, needs neither.
"""

import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from jupyterhub._data import DATA_FILES_PATH
from tornado import web
from traitlets import Float, Unicode, default
from traitlets.config import LazyConfigValue

from ..spawner import clients
from .certificates import CertificateIssuer
from .hub import HubAPI
from .keyring import KeyRing
from .keys_web import Pages, handlers
from .service_app import HubServiceApp

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


class SSHKeysService(HubServiceApp):
    """The SSH keys service."""

    name = "hardened-spawner-ssh-keys"
    description = "the SSH keys service"

    service_url = Unicode(config=True, help="Where the service listens. Default: ``$JUPYTERHUB_SERVICE_URL``.")
    service_prefix = Unicode(config=True, help="URL prefix of the service. Default: ``$JUPYTERHUB_SERVICE_PREFIX``.")
    service_name = Unicode(config=True, help="The service's name. Default: ``$JUPYTERHUB_SERVICE_NAME``.")
    base_url = Unicode(config=True, help="The hub's base URL. Default: ``$JUPYTERHUB_BASE_URL``.")
    follow_seconds = Float(
        180.0, config=True,
        help="""After a change, how long to wait for a server that is still starting (it may have
        read the keys before the change) to deliver the keys to it once it is up.""",
    )

    aliases = {"config": "HubServiceApp.config_file", "log-level": "Application.log_level"}

    @default("log_format")
    def _default_log_format(self):
        return "[%(levelname)1.1s %(asctime)s.%(msecs).03d SSHKeys] %(message)s"

    @default("service_url")
    def _default_service_url(self):
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8023")

    @default("service_prefix")
    def _default_service_prefix(self):
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/ssh-keys/")

    @default("service_name")
    def _default_service_name(self):
        return os.environ.get("JUPYTERHUB_SERVICE_NAME", "ssh-keys")

    @default("base_url")
    def _default_base_url(self):
        return os.environ.get("JUPYTERHUB_BASE_URL", "/")

    def initialize(self, argv=None):
        self.load_hub_config(argv)
        settings = self.hub_settings("ssh-keys")
        client_kwargs = dict(settings.client_kwargs)
        client = lambda: clients.docker_client(client_kwargs)  # noqa: E731 - made on first use: Docker may start later
        self.ring = KeyRing(settings.ssh_key_store(), settings.ssh_key_policy(), settings.ssh_store_timeout,
                            self.audit_log(settings), HubAPI(self.hub_api_url, self.api_token), client,
                            ThreadPoolExecutor(4, thread_name_prefix="ssh-keys"), self.follow_seconds)
        if settings.ssh_user_certificates:
            self.ring.certificates = CertificateIssuer(self.ring, settings.ssh_host_ca,
                                                       settings.ssh_user_certificate_hours, self.ring.audit)
        site_templates = self.config.JupyterHub.get("template_paths", [])
        if isinstance(site_templates, LazyConfigValue):  # c.JupyterHub.template_paths.insert(...)
            site_templates = site_templates.get_value([])
        pages = Pages(self.service_name, self.service_prefix, self.base_url,
                      [TEMPLATES, *site_templates], os.path.join(DATA_FILES_PATH, "templates"))
        self.app = web.Application(handlers(self.ring, pages), cookie_secret=os.urandom(32),
                                   log_function=self._log_request)

    def _log_request(self, handler):
        status = handler.get_status()
        if status >= 400 or self.log.isEnabledFor(10):
            self.log.info("%d %s %s", status, handler.request.method, handler.request.path)

    async def serve(self):
        stop = self.stop_event()
        where = urlsplit(self.service_url)
        server = self.app.listen(where.port or 80, where.hostname or "127.0.0.1", xheaders=True)
        self.log.info("SSH keys service on %s%s, key store: %s", self.service_url, self.service_prefix,
                      self.ring.store.describe())
        await self.watch_parent(stop)
        server.stop()

    def start(self):
        asyncio.run(self.serve())


def main(argv=None):
    app = SSHKeysService()
    app.initialize(argv if argv is not None else sys.argv[1:])
    app.start()


if __name__ == "__main__":
    main()
