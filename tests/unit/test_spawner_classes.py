"""Which settings each spawner class reads, and that tools read them as the hub's class does.

The bug this guards: tools built a HardenedDockerSpawner whatever the hub ran,
so with ``spawner_class = "hardened-swarm"`` an unsafe
``c.HardenedSwarmSpawner.cap_add`` passed ``enforce_config`` and
``validate-config``, and ``check-image`` ignored ``c.HardenedSwarmSpawner.*``.
"""

import pytest
from traitlets.config import Config

from hardened_spawner.errors import UnsafeConfig
from hardened_spawner.spawner import (
    HardenedDockerSpawner, HardenedSpawner, HardenedSwarmSpawner, configured_settings, configured_spawner_class,
)
from hardened_spawner.tools.check_image import policy_from_config
from hardened_spawner.tools.config_check import enforce_config, problems_in


def swarm_config(**settings):
    c = Config()
    c.JupyterHub.spawner_class = "hardened-swarm"
    for name, value in settings.items():
        setattr(c.HardenedSwarmSpawner, name, value)
    return c


def test_swarm_is_a_sibling_of_docker():
    assert not issubclass(HardenedSwarmSpawner, HardenedDockerSpawner)
    assert issubclass(HardenedSwarmSpawner, HardenedSpawner) and issubclass(HardenedDockerSpawner, HardenedSpawner)
    assert configured_spawner_class(swarm_config()) is HardenedSwarmSpawner


def test_unsafe_swarm_settings_stop_the_hub():
    config = swarm_config(cap_add=["SYS_ADMIN"])
    assert ("HardenedSwarmSpawner.cap_add", "capability SYS_ADMIN is root-equivalent and cannot be added back") \
        in problems_in(config)
    with pytest.raises(UnsafeConfig, match="HardenedSwarmSpawner.cap_add"):
        enforce_config(config)


def test_check_image_reads_the_swarm_admission_settings():
    policy, settings = policy_from_config(swarm_config(admission_require_digest=True,
                                                       admission_image_allowlist=["registry.example.org/**"]))
    assert isinstance(settings, HardenedSwarmSpawner)
    assert policy.require_digest and policy.image_allowlist == ("registry.example.org/**",)


def test_sections_shared_by_both_and_kept_for_old_configs():
    c = Config()
    c.HardenedSpawner.pids_limit = 500
    c.HardenedDockerSpawner.cpu_limit = 3.0
    c.HardenedSwarmSpawner.cpu_limit = 2.0
    c.HardenedDockerSpawner.shm_size = "1g"
    docker = configured_settings(c, "x")
    c.JupyterHub.spawner_class = "hardened-swarm"
    swarm = configured_settings(c, "x")
    assert (docker.pids_limit, docker.cpu_limit, docker.shm_size) == (500, 3.0, "1g")
    # c.HardenedDockerSpawner still applies to swarm (configs written when Swarm was its subclass),
    # and c.HardenedSwarmSpawner wins over it
    assert (swarm.pids_limit, swarm.cpu_limit, swarm.shm_size) == (500, 2.0, "1g")


def test_policy_is_built_from_tagged_traits_without_repeating_defaults():
    settings = configured_settings(Config(), "x")
    fields = settings.policy_traits()
    assert fields["modes"] == "admission_rule_modes" and fields["allowed_channels"] == "conda_allowed_channels"
    from hardened_spawner.admission.policy import Policy

    assert settings.admission_policy() == Policy()  # every default comes from the Policy itself
    assert set(fields) == set(Policy.__dataclass_fields__)


def test_per_user_overlays_on_swarm_need_the_hub_on_them_and_no_published_ports():
    problems = dict(problems_in(swarm_config(network_per_user=True, use_internal_ip=False)))
    assert "ports published on the nodes would let every container reach" in problems[
        "HardenedSwarmSpawner.use_internal_ip"]
    assert "a hub outside a container cannot reach a server on an overlay" in problems[
        "HardenedSwarmSpawner.network_peers"]
    fine = swarm_config(network_per_user=True, network_peers=["hub"])  # use_internal_ip: True off "bridge"
    assert not [p for p in problems_in(fine) if "network" in p[0] or "internal_ip" in p[0]]
    settings = configured_settings(fine, "ovalice")
    assert settings.network_name == settings.isolated_network() == "hardened-spawner-ovalice"
    assert configured_settings(swarm_config(), "x").isolated_network() is None  # unchanged without it
