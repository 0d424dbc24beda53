"""Check a hub configuration for unsafe spawner settings, before the hub runs.

``enforce_config(c)`` at the end of ``jupyterhub_config.py`` makes the hub
refuse to start with a message naming each offending setting; the
``hardened-spawner validate-config`` command runs the same checks in CI.
The settings are read as the hub's spawner class reads them
(``JupyterHub.spawner_class``: HardenedDockerSpawner or HardenedSwarmSpawner),
and each profile's create request is planned with placeholders and checked
against the invariants every real spawn is checked against
(:mod:`..decisions.samples`).
"""

import dataclasses
import os

from traitlets.config import PyFileConfigLoader

from .. import __version__
from ..decisions.container import ContainerSpec
from ..decisions.samples import SAMPLE_IMAGE, SAMPLE_IMAGE_INFO, sample_gpus, sample_inputs, violations_by_profile
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
    problems = settings.config_problems() + settings.file_problems()
    return problems + sample_problems(settings) if not problems else problems


def sample_problems(spawner):
    """Invariants the create request of each profile would break, planned as a spawn plans it.

    Placeholders stand for what only a spawn knows: the image (its Id, no USER, only
    root in its account files: a user *name* in ``extra_create_kwargs`` is resolved
    against the real image at spawn), the command, the hub's own environment, the
    user's keys, the GPU ids of a lease, the daemon (Docker's default data root; the
    hub checks the real one at every spawn). Callable settings are evaluated per
    spawn and are checked there.
    """
    extras = (spawner.extra_host_config, spawner.extra_create_kwargs)
    catalog, catalog_problems = spawner.profile_catalog()
    if catalog_problems or any(callable(extra) for extra in extras):
        return []
    create_extra = dict(spawner.extra_create_kwargs)
    if str(create_extra.get("user", "root")).partition(":")[0] not in ("root", "0") and \
            not str(create_extra["user"]).partition(":")[0].isdigit():
        del create_extra["user"]
    environment = {k: v for k, v in spawner.environment.items() if not callable(v)} \
        if isinstance(spawner.environment, dict) else {}
    spec = ContainerSpec(
        image=SAMPLE_IMAGE, name=spawner.container_name, command=["jupyterhub-singleuser"],
        environment=environment, port=spawner.port, volume_binds=spawner.volume_binds,
        volume_mount_points=spawner.volume_mount_points, mounts=spawner.mount_binds, links=spawner.links,
        network_name=spawner.network_name, use_internal_ip=spawner.use_internal_ip, host_ip=spawner.host_ip,
        remove=spawner.remove, extra_create_kwargs=create_extra,
        extra_host_config=spawner.extra_host_config,
    )
    inputs = {}
    for profile in catalog:
        limits = dataclasses.replace(profile.limits, gpus=sample_gpus(profile.gpus))
        inputs[profile.slug] = sample_inputs(
            profile, create_image=spawner.create_image_ref(SAMPLE_IMAGE, SAMPLE_IMAGE_INFO), spec=spec,
            limits=limits, hardening=spawner.hardening(), package_version=__version__,
            network=spawner.isolated_network(), gpu_env=spawner.gpu_environment(profile, limits),
            keys="", keys_mount=spawner.keys_mount(""), extra_forbidden=tuple(spawner.extra_forbidden_host_paths))
    prefix = spawner.setting_prefix
    return [(f"{prefix}profiles[{slug!r}] (its create request, planned)",
             f"[{what}] {message}; change the setting that merges this in (extra_host_config, "
             "extra_create_kwargs, volumes, mounts or the profile)")
            for slug, what, message in violations_by_profile(inputs)]


def enforce_config(config):
    """Raise :class:`UnsafeConfig` (the hub then exits) if ``config`` is unsafe."""
    problems = problems_in(config)
    if problems:
        raise UnsafeConfig(problems)
