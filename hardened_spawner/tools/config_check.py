"""Check a hub configuration for unsafe spawner settings, before the hub runs.

``enforce_config(c)`` at the end of ``jupyterhub_config.py`` makes the hub
refuse to start with a message naming each offending setting; the
``hardened-spawner validate-config`` command runs the same checks in CI.
"""

import os
from types import SimpleNamespace

from traitlets.config import Config, PyFileConfigLoader

from ..errors import UnsafeConfig


def load_config_file(path):
    """Load a ``jupyterhub_config.py`` the way JupyterHub does, without running a hub."""
    path = os.path.abspath(path)
    loader = PyFileConfigLoader(os.path.basename(path), os.path.dirname(path))
    return loader.load_config()


def problems_in(config):
    """Unsafe settings in ``config`` as ``(setting, message)`` pairs."""
    from ..spawner import HardenedDockerSpawner

    # Spawner settings are checked as a spawner sees them (class inheritance
    # included); templates need a user name, so a placeholder one is given.
    spawner = HardenedDockerSpawner(config=Config(config), user=SimpleNamespace(name="config-check"))
    return spawner.config_problems() + spawner.admission_file_problems()


def enforce_config(config):
    """Raise :class:`UnsafeConfig` (the hub then exits) if ``config`` is unsafe."""
    problems = problems_in(config)
    if problems:
        raise UnsafeConfig(problems)
