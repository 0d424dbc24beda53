"""Wire the operations features into a hub configuration (``jupyterhub_config.py``)::

    from hardened_spawner.operations.hub import configure
    configure(c)

adds the operations page (``/hub/operations``), the API the SSH gateway
reports its audit records to, the scope that lets it, the verification
summaries' endpoint and its scope, and the GPU reclaim
and home watch notices on every hub page. Metrics and events need nothing: they are on
whenever the hardened spawner or authenticator runs.
"""

import os

from ..spawner import clients
from . import admin, reports, summaries
from .home_usage import home_usage

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
REPORTERS_ROLE = "hardened-spawner-event-reporters"


def gpu_notices(user):
    """The GPU reclaim notices of the user whose page is rendered (a ``template_vars`` callable)."""
    return clients.reclaimer().notices_for(user.name) if user is not None and hasattr(user, "name") else []


def home_notices(user):
    """The home watch notices (``home_quota_mode = "watch"``) of the user whose page is rendered."""
    return clients.home_watcher().notices_for(user.name) if user is not None and hasattr(user, "name") else []


def configure(c, reporters=("ssh-gateway",)):
    """Add the operations page and notices to hub config ``c``; ``reporters``: services that forward events."""
    c.JupyterHub.extra_handlers.extend(admin.handlers() + reports.handlers() + summaries.handlers())
    c.JupyterHub.template_paths.insert(0, TEMPLATES)  # before the defaults its page.html extends
    c.JupyterHub.template_vars.update({"hs_gpu_notices": gpu_notices, "hs_home_notices": home_notices,
                                    "hs_home_usage": home_usage})
    c.JupyterHub.custom_scopes.update({reports.SCOPE: {
        "description": "Report a hardened-spawner service's audit records to the hub (metrics and events)"},
        summaries.SCOPE: {"description": "Read the hub's signed verification summaries (SLSA VSA) of images"}})
    if reporters:
        c.JupyterHub.load_roles.append({"name": REPORTERS_ROLE, "scopes": [reports.SCOPE],
                                        "services": list(reporters)})
