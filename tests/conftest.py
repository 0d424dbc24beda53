import os
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

# tests/installed runs only from the installed wheel (rig/test.sh sets HS_WHEEL_RUN=1 there).
collect_ignore = [] if os.environ.get("HS_WHEEL_RUN") == "1" else ["installed"]

from hubrig import IMAGE, Hub, remove_user_artifacts  # noqa: E402

LABEL = "hardened-spawner.owner"

# Property tests check what they generate, not how fast: a loaded CI machine must not fail them.
settings.register_profile("rig", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("rig")


# Modules whose hubs lease GPUs on the rig's main daemon. A hub counts every GPU container on
# its host (the GPUs are the host's), so these run one after another on one pytest-xdist
# worker; every other module is a group of its own (its module-scoped hub stays on one worker).
GPU_MODULES = {"test_gpu_allocation.py", "test_profiles_hub.py", "test_refusals_hub.py", "test_operations.py",
               "test_browser_login.py", "test_browser_refusals.py", "test_oauth.py", "test_oauth_images.py",
               "test_oauth_id_token.py", "test_deployment.py"}
# Modules on the rig's one swarm (rig/swarm.sh): each stops it when done, so they run one after another.
SWARM_MODULES = {"test_swarm.py", "test_swarm_isolation.py"}
# Modules whose tests each start a hub of their own and mostly wait (a certificate's lifetime): one group
# per test, so they wait on different workers at once.
PER_TEST_MODULES = {"test_ssh_host_renewal.py"}


def _group(module):
    name = Path(module).name
    return "main-daemon-gpus" if name in GPU_MODULES else "swarm" if name in SWARM_MODULES else module


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.nodeid.split("::")[0]
        per_test = Path(module).name in PER_TEST_MODULES
        item.add_marker(pytest.mark.xdist_group(item.nodeid if per_test else _group(module)))


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


def only_container(dclient, user):
    """The id of ``user``'s one container."""
    (found,) = containers_of(dclient, user)
    return found["Id"]


def run_in(dclient, container, script, user=""):
    """``(exit code, output)`` of ``sh -c script`` in ``container``, as ``user`` (default: the container's
    user, the notebook user)."""
    exec_id = dclient.exec_create(container, ["sh", "-c", script], user=user)
    out = dclient.exec_start(exec_id).decode(errors="replace")
    return dclient.exec_inspect(exec_id)["ExitCode"], out


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
        "  delete:\n    enabled: true\n"  # a test withdraws an attestation
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


@pytest.fixture(scope="session")
def e2e_shots():
    """artifacts/e2e/, emptied once per run: it holds this run's screenshots only."""
    import shutil

    from e2e.browsing import SHOTS

    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    return SHOTS


@pytest.fixture(scope="module")
def browser(e2e_shots):
    """Debian's Chromium driven by Playwright (tests/e2e), one per module: its event loop
    ends with the module, so asyncio tests that run later in the session are unaffected."""
    from playwright.sync_api import sync_playwright

    from e2e.browsing import ARGS, CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: rig/install.sh installs Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()
