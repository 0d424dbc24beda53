"""Fixtures for DockerSpawner's published test modules (its sdist has no tests/conftest.py).

Loaded with ``pytest -p upstream_plugin`` by test_dockerspawner_suite.py, which runs
the modules from the dockerspawner sdist twice on the rig's daemon:
``HS_UPSTREAM_SPAWNER=plain`` (DockerSpawner itself) and ``=hardened``
(HardenedDockerSpawner put in its place, so ``from dockerspawner import
DockerSpawner`` in the test modules, their isinstance checks and the hub's
spawner class all mean the hardened one).

The hub is JupyterHub's own MockHub, through the fixtures jupyterhub ships in
``jupyterhub.tests.conftest`` (``app``, ``user``, ``cleanup_after``, ...);
the DockerSpawner-specific ones are written here. Registry images the modules
name are not reachable, so the rig's local images are tagged with those names
before every test (``SUBSTITUTES``).
"""

import os
from unittest import mock

import docker
import pytest
import pytest_asyncio
from jupyterhub.tests.conftest import (  # noqa: F401  (fixtures, used by name)
    app as jupyterhub_app, cleanup_after, io_loop, ssl_tmpdir, tmp_cwd, user,
)
from jupyterhub.tests.mocking import MockHub

import dockerspawner
from hardened_spawner.spawner.networks import bridge_gateway

KIND = os.environ.get("HS_UPSTREAM_SPAWNER", "plain")
if KIND == "hardened":
    from hardened_spawner.spawner import HardenedDockerSpawner

    dockerspawner.DockerSpawner = HardenedDockerSpawner
elif KIND != "plain":
    raise pytest.UsageError(f"HS_UPSTREAM_SPAWNER must be plain or hardened, not {KIND!r}")
SPAWNER = dockerspawner.DockerSpawner
PREFIX = f"hs-upstream-{KIND}"

SINGLEUSER = os.environ.get("HS_SINGLEUSER_IMAGE", "hardened-spawner/singleuser:local")
BASE = os.environ.get("HS_BASE_IMAGE", "hardened-spawner/debian-base:bookworm")
# name in the test modules (or DockerSpawner's default) -> the rig's image standing in for it
SUBSTITUTES = {
    SPAWNER.image.default_value: SINGLEUSER,          # quay.io/jupyterhub/singleuser:<hub x.y>
    "quay.io/jupyterhub/singleuser:4.0": SINGLEUSER,
    "quay.io/jupyterhub/singleuser:4": SINGLEUSER,
    "busybox:1.29.1": BASE,                           # a shell, ls and sleep; runs as root like busybox
}


def _client():
    return docker.APIClient(version="auto", **docker.utils.kwargs_from_env())


# containers reach the hub on the bridge's gateway (the rig's daemons each have their own bridge)
MockHub.hub_ip = "0.0.0.0"
MockHub.hub_connect_ip = bridge_gateway(_client())


def pytest_collection_modifyitems(items):
    # the hub fixture is module-scoped, so every async test shares the module's event loop
    for item in items:
        marker = item.get_closest_marker("asyncio")  # auto mode adds one without a loop scope
        if pytest_asyncio.is_async_test(item) and not (marker and marker.kwargs):
            item.add_marker(pytest.mark.asyncio(loop_scope="module"), append=False)


@pytest.fixture(autouse=True)
def substitute_images():
    """Tag the stand-ins before every test: test_image_pull_policy removes busybox:1.29.1."""
    client = _client()
    for name, local in SUBSTITUTES.items():
        repo, _, tag = name.rpartition(":")
        client.tag(local, repo, tag)


@pytest.fixture(scope="session", autouse=True)
def remove_containers():
    yield
    client = _client()
    for c in client.containers(all=True, filters={"name": PREFIX}):
        client.remove_container(c["Id"], force=True, v=True)


@pytest.fixture
def app(jupyterhub_app):  # noqa: F811
    jupyterhub_app.config.DockerSpawner.prefix = PREFIX
    if KIND == "hardened":
        # DockerSpawner's tests use its default layout: no home volume, the image's home in its root
        # filesystem, which the default read-only root refuses by design (the notebook server could not
        # write its home: tests/integration/test_read_only_root.py). Drop-in behaviour is compared on the
        # writable root DockerSpawner has.
        jupyterhub_app.config.HardenedDockerSpawner.read_only_root = False
    return jupyterhub_app


@pytest.fixture
def named_servers(app):
    with mock.patch.dict(app.tornado_settings, {"allow_named_servers": True, "named_server_limit_per_user": 2}):
        yield


@pytest.fixture
def dockerspawner_configured_app(app, named_servers):
    with mock.patch.dict(app.tornado_settings, {"spawner_class": SPAWNER}):
        yield app


_usernames = iter(range(1, 1_000_000))


@pytest.fixture
def username():
    return f"upstream-user-{next(_usernames)}"
