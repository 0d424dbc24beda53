"""A real login in a real browser: Debian's Chromium, driven by Playwright.

The hub runs the repository's jupyterhub_config.py as ``rig/hub.sh`` does
(HardenedOAuthenticator, the demo profiles) against the demo provider
(rig/oidc.sh). Every step leaves a screenshot in artifacts/e2e/.
The browser may only talk to loopback: any other request is aborted.
"""

import re
import time

import pytest
from playwright.sync_api import expect

from e2e.browsing import log_in, new_page, shot
from hubrig import Hub, remove_user_artifacts
from oidcrig import hub_env

pytestmark = [pytest.mark.hub, pytest.mark.docker]

REFRESH_AGE = 2
USERS = ("alice", "bob")


@pytest.fixture(scope="module")
def hub(idp, tmp_path_factory, dclient):
    # GPU ids of its own, so GPU tests running on the shared daemon never hold this one
    env = {**hub_env(idp, REFRESH_AGE), "HS_GPU_IDS": "GPU-e2e-oidc-0"}
    # as in production, a spawn refused within 10 s answers the REST request itself (hubrig sets 0)
    extra = ("c.JupyterHub.allow_named_servers = True\n"
             "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 10}\n")
    hub = Hub(tmp_path_factory.mktemp("e2e-hub"), extra, env=env)
    hub.users.update(USERS)
    hub.start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, USERS)


def test_alice_logs_in_sees_gpu_profile_spawns_and_lands_in_her_server(hub, browser, dclient):
    page = new_page(browser)
    log_in(page, hub, "alice", "alice")
    gpu = page.get_by_label(re.compile(r"One GPU"))
    expect(gpu).to_be_visible()
    expect(page.get_by_text(re.compile(r"2 CPUs, 4 GiB, 1 GPU"))).to_be_visible()
    expect(page.get_by_label(re.compile(r"^CPU"))).to_be_visible()
    shot(page, "alice-3-options-form")

    gpu.check()
    page.get_by_role("button", name=re.compile("Start")).click()
    expect(page).to_have_url(re.compile(r"/hub/spawn-pending/alice"))
    phases = watch_progress(page)
    page.wait_for_url(re.compile(r"/user/alice/"), timeout=150_000)
    expect(page).to_have_title(re.compile("JupyterLab"), timeout=60_000)
    expect(page.locator(".jp-LauncherCard").first).to_be_visible(timeout=60_000)
    shot(page, "alice-5-running-server")

    # the progress bar named the phases; the container got her GPU
    text = " | ".join(phases)
    for words in ("Profile One GPU: 2 CPUs, 4 GiB, 1 GPU", "Checking image", "Starting the container"):
        assert words in text, text
    [container] = dclient.containers(filters={"label": "hardened-spawner.owner=alice"})
    assert container["Labels"]["hardened-spawner.gpus"] == "GPU-e2e-oidc-0"


def watch_progress(page, timeout=150):
    """The spawn page's event log, read until the page moves on; one screenshot mid-way."""
    page.locator("#progress-details summary").click()
    seen, shot_taken = [], False
    deadline = time.monotonic() + timeout
    while "/spawn-pending/" in page.url and time.monotonic() < deadline:
        try:
            seen = page.locator(".progress-log-event").all_inner_texts() or seen
        except Exception:  # the page navigated while we read it
            break
        if len(seen) >= 3 and not shot_taken:
            shot(page, "alice-4-progress")
            shot_taken = True
        time.sleep(0.1)
    assert shot_taken, f"the progress page showed too few events: {seen}"
    return seen


def test_alice_removed_from_her_groups_is_sent_back_to_login(hub, idp, browser):
    page = new_page(browser)
    log_in(page, hub, "alice", "alice-again", landing=r"/user/alice/")  # her server runs
    idp.set_user("alice", [])
    time.sleep(REFRESH_AGE + 1)
    page.goto(f"{hub.url}/hub/home")
    expect(page).to_have_url(re.compile(r"/hub/login"))
    expect(page.get_by_role("heading", name="Your access was withdrawn")).to_be_visible()
    shot(page, "alice-6-revoked-back-to-login")
    deadline = time.monotonic() + 60
    while hub.server("alice") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not hub.server("alice"), "her server should have been stopped"
    idp.set_user("alice", ["staff", "ml-gpu"])


def test_bob_sees_no_gpu_profile_and_the_api_refuses_it(hub, browser):
    page = new_page(browser)
    log_in(page, hub, "bob", "bob")
    # one profile only, so the hub shows no form and starts his CPU server at once
    expect(page.get_by_label(re.compile(r"One GPU"))).to_have_count(0)
    page.wait_for_url(re.compile(r"/user/bob/"), timeout=150_000)
    expect(page.locator(".jp-LauncherCard").first).to_be_visible(timeout=60_000)
    shot(page, "bob-3-cpu-server-without-gpu-choice")
    assert "Profile CPU: 1 CPU, 2 GiB" in hub.log()
    page.goto(f"{hub.url}/hub/home")
    status, body = page.evaluate("""async () => {
        const r = await fetch('/hub/api/users/bob/servers/gpu', {
            method: 'POST',
            headers: {'X-XSRFToken': window.jhdata.xsrf_token, 'Content-Type': 'application/json'},
            body: JSON.stringify({profile: 'gpu-1'})});
        return [r.status, await r.text()];
    }""")
    assert status == 403 and "You may not use profile 'gpu-1'" in body, (status, body)
    r = hub.api("POST", "/users/bob/servers/gpu2", json={"profile": "gpu-1"})  # an admin for him: same
    assert r.status_code == 403 and "You may not use profile 'gpu-1'" in r.json()["message"]
    assert not hub.server("bob", "gpu") and not hub.server("bob", "gpu2")


def test_idp_down_shows_a_clear_error_page(hub, idp, browser):
    """Last: stops the provider."""
    idp.stop()
    page = new_page(browser)
    page.goto(f"{hub.url}/hub/login")
    page.get_by_role("button", name=re.compile("Sign in with")).click()
    expect(page.get_by_role("heading", name="503 : Identity provider unreachable")).to_be_visible()
    expect(page.get_by_text(re.compile(f"The identity provider \\({idp.issuer}\\) cannot be reached, "
                                       "so you cannot log in right now"))).to_be_visible()
    shot(page, "idp-down-error-page")
