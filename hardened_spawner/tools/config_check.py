"""Check a hub configuration for unsafe spawner settings, before the hub runs.

``enforce_config(c)`` at the end of ``jupyterhub_config.py`` makes the hub
refuse to start with a message naming each offending setting; the
``hardened-spawner validate-config`` command runs the same checks in CI.
The settings are read as the hub's spawner class reads them
(``JupyterHub.spawner_class``: HardenedDockerSpawner or HardenedSwarmSpawner).
"""

import os

from traitlets.config import PyFileConfigLoader

from ..errors import UnsafeConfig
from ..spawner import configured_settings


def load_config_file(path):
    """Load a ``jupyterhub_config.py`` the way JupyterHub does, without running a hub."""
    path = os.path.abspath(path)
    loader = PyFileConfigLoader(os.path.basename(path), os.path.dirname(path))
    return loader.load_config()


def problems_in(config):
    """Unsafe settings in ``config`` as ``(setting, message)`` pairs."""
    # templates need a user name, so a placeholder one is given
    settings = configured_settings(config, "config-check")
    return settings.config_problems() + settings.file_problems()


def enforce_config(config):
    """Raise :class:`UnsafeConfig` (the hub then exits) if ``config`` is unsafe."""
    problems = problems_in(config)
    if problems:
        raise UnsafeConfig(problems)
