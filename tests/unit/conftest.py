"""Fixtures shared by the unit tests (a test module never imports another's fixtures).

``fake`` is the one fake at the Docker API boundary (:mod:`fake_docker`, as
oauthenticator's ``mocks.py``); ``make`` builds a HardenedDockerSpawner on it
with a placeholder user, admission off unless asked. ``make_auth`` builds a
HardenedOAuthenticator on a canned identity provider (:mod:`auth_fakes`).
"""

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from jupyterhub.objects import Hub

from auth_fakes import authenticator
from fake_docker import FakeDocker
from helpers import IMAGE
from hardened_spawner.spawner import HardenedDockerSpawner, clients

POOL = ThreadPoolExecutor(4)


class FakeUser(SimpleNamespace):
    async def get_auth_state(self):
        return None


@pytest.fixture
def fake():
    clients.reset()  # image ids repeat across fakes: no cache may carry over
    docker = FakeDocker()
    docker.add_image(IMAGE)
    return docker


@pytest.fixture
def make(fake, tmp_path):
    def make(name="alice", server="", **settings):
        cls = type("FakeDockerSpawner", (HardenedDockerSpawner,), {"_client": fake})
        user = FakeUser(name=name, url=f"/user/{name}/", groups=[], escaped_name=name, server=None, id=1)
        settings.setdefault("image", IMAGE)
        settings.setdefault("use_internal_ip", True)
        # the shipped config's home volume: with the default read-only root, the home must be writable
        settings.setdefault("volumes", {"jupyterhub-user-{username}": "/home/jovyan"})
        settings.setdefault("admission_enabled", False)  # admission has its own tests (engine, service, hub)
        settings.setdefault("isolation_probe", False)  # probes need a real daemon (tests/integration/test_isolation.py)
        settings.setdefault("ready_wait", 0)  # nothing listens at the fake's addresses (tests/unit/test_ready.py)
        settings.setdefault("audit_log_file", str(tmp_path / "audit.log"))
        settings.setdefault("ssh_host_ca_key_file", str(tmp_path / "ssh_host_ca_ed25519_key"))
        orm = SimpleNamespace(user_options={}, started=None, server=None, name=server)
        spawner = cls(user=user, orm_spawner=orm, hub=Hub(), api_token="tok", oauth_client_id=f"jupyterhub-user-{name}",
                      pull_policy="never", docker_io=clients.DockerIO(fake, POOL), cmd=["true"], **settings)
        return spawner
    return make


@pytest.fixture
def make_auth(tmp_path):
    return lambda idp: authenticator(idp, tmp_path)
