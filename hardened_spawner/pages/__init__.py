"""What people see when the hub says no: the hub's answers to refused spawns and withdrawn access.

- :mod:`.api`: the REST answer to a refused spawn is its reason, message,
  findings and reference id (:meth:`~..errors.SpawnRefused.as_dict`), and so
  is the progress stream's failure event.
- :mod:`.login`: the login page of a user whose access was withdrawn says
  so, when, and what to do; a refused login says why.
- :mod:`.access`: whether a user's access was withdrawn or blocked, for the
  SSH gateway (revocation reaches SSH within seconds).
- ``templates/``: the spawn form shows a refusal's findings as a table
  (add :data:`TEMPLATES` to ``c.JupyterHub.template_paths``).

JupyterHub routes requests to an authenticator's handlers before its own,
so :class:`RefusalPages`, an authenticator mixin, is how these handlers
take over the spawn API's routes. ``HardenedOAuthenticator`` includes it;
:func:`with_refusal_pages` adds it to any other authenticator.
"""

import os

from .access import AccessAPIHandler
from .api import RefusalProgressAPIHandler, RefusalServerAPIHandler

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

API_HANDLERS = [
    (r"/api/users/([^/]+)/server", RefusalServerAPIHandler),
    (r"/api/users/([^/]+)/server/progress", RefusalProgressAPIHandler),
    (r"/api/users/([^/]+)/servers/([^/]*)", RefusalServerAPIHandler),
    (r"/api/users/([^/]+)/servers/([^/]*)/progress", RefusalProgressAPIHandler),
    (r"/api/hardened-spawner/access/([^/]+)", AccessAPIHandler),
]


class RefusalPages:
    """Authenticator mixin: the spawn API answers a refusal with its reason, findings and reference id."""

    def get_handlers(self, app):
        """The refusal handlers, then the authenticator's. ``app``: the JupyterHub app (None outside a hub)."""
        if app is not None and TEMPLATES not in app.template_paths:
            self.log.warning("c.JupyterHub.template_paths lacks %s: the spawn form shows refusals as plain "
                             "text, and the access-withdrawn page cannot render", TEMPLATES)
        return API_HANDLERS + super().get_handlers(app)


def with_refusal_pages(authenticator_class):
    """``authenticator_class`` with :class:`RefusalPages`, for ``c.JupyterHub.authenticator_class``."""
    return type(f"{authenticator_class.__name__}WithRefusalPages", (RefusalPages, authenticator_class), {})
