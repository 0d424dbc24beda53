import os
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubrig import IMAGE, Hub, remove_user_artifacts  # noqa: E402

LABEL = "hardened-spawner.owner"

# Property tests check what they generate, not how fast: a loaded CI machine must not fail them.
settings.register_profile("rig", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("rig")


@pytest.fixture(scope="session")
def dclient():
    """docker-py low-level client for the rig's daemon (rig/test.sh sets DOCKER_HOST)."""
    try:
        client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
        client.ping()
    except Exception as e:
        pytest.fail(f"no Docker daemon at {os.environ.get('DOCKER_HOST')!r}: run the tests with rig/test.sh ({e})")
    return client


@pytest.fixture(scope="session")
def image(dclient):
    dclient.inspect_image(IMAGE)
    return IMAGE


def containers_of(dclient, user):
    return dclient.containers(all=True, filters={"label": f"{LABEL}={user}"})


@pytest.fixture
def make_hub(tmp_path, dclient):
    """Factory: start a hub with extra config; every hub and container is cleaned up."""
    hubs = []

    def make(extra="", start=True, env=None, name="hub"):
        hub = Hub(tmp_path / name, extra, env)
        hubs.append(hub)
        return hub.start() if start else hub

    yield make
    for hub in hubs:
        hub.stop()
        remove_user_artifacts(dclient, hub.users)  # only this test's users: others share the daemon


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A real image registry (Debian's docker-registry) on loopback; yields host:port."""
    from hubrig import free_port

    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}/data\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "log:\n  level: warn\n"
    )
    proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                            stdout=open(root / "log", "wb"), stderr=subprocess.STDOUT)
    import requests
    for _ in range(100):
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("docker-registry did not start: " + (root / "log").read_text())
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    """A real OpenID Connect provider (oidc-provider-mock) on loopback with the demo users."""
    from oidcrig import IdP

    idp = IdP(tmp_path_factory.mktemp("idp") / "idp.log").start()
    yield idp
    idp.stop()
