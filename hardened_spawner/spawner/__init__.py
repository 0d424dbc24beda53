"""The spawners: one hardened spawn pipeline, on one Docker host and on Docker Swarm.

``settings`` declares every trait (``HardenedSpawner``), ``base`` holds the
pipeline, ``docker`` and ``swarm`` are its two backends (siblings), and
``clients`` owns the process-wide Docker clients, thread pools and caches.
"""

from importlib.metadata import entry_points

from traitlets.utils.importstring import import_item

from .docker import HardenedDockerSpawner
from .settings import HardenedSpawner
from .swarm import HardenedSwarmSpawner

__all__ = ["HardenedDockerSpawner", "HardenedSpawner", "HardenedSwarmSpawner", "configured_spawner_class"]


def configured_spawner_class(config):
    """The hardened spawner class a hub ``config`` runs (``JupyterHub.spawner_class``).

    Entry point names (``hardened-swarm``), import strings and classes are
    understood; anything that is not a hardened spawner gives
    HardenedDockerSpawner, whose settings tools then read.
    """
    value = config.JupyterHub.get("spawner_class") if "JupyterHub" in config else None
    if isinstance(value, str):
        found = [ep for ep in entry_points(group="jupyterhub.spawners") if ep.name == value]
        try:
            value = found[0].load() if found else import_item(value)
        except (ImportError, AttributeError, ValueError):
            value = None
    if isinstance(value, type) and issubclass(value, HardenedSpawner):
        return value
    return HardenedDockerSpawner


def configured_settings(config, user_name):
    """The settings of the hub's spawner class under ``config``, for tools that run outside the hub.

    A spawner object is the one place where traitlets resolves its class
    hierarchy's config sections; it is built with a placeholder user and
    never started.
    """
    from types import SimpleNamespace

    from traitlets.config import Config

    return configured_spawner_class(config)(config=Config(config), user=SimpleNamespace(name=user_name))
