"""Issue 16, operating the hub, end to end on one hub: metrics, events, the operations page, GPU reclaim.

One hub (the shipped configuration, the test password) with one GPU id the
rig's stand-in NVIDIA hook makes real, short reclaim timeouts and an event
log file. Real spawns move the numbers on /hub/metrics and write schema'd
events; the SSH gateway's refusal reaches the hub's metrics; an admin reads
the operations page in Chromium (screenshots in artifacts/e2e/operations/),
re-checks an image and releases a lease; a GPU server whose kernel stops
running code is warned on the hub's pages, then stopped, and the next user
gets its GPU; a lease past its profile's maximum age is reclaimed too.
"""

import asyncio
import json
import re
import shutil
import time
import uuid
from pathlib import Path

import asyncssh
import pytest
import requests
from jupyter_events.schema import EventSchema
from playwright.sync_api import expect, sync_playwright
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from conftest import containers_of
from hubrig import REPO, Hub, remove_user_artifacts

pytestmark = [pytest.mark.hub, pytest.mark.docker]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SHOTS = REPO / "artifacts" / "e2e" / "operations"
SCHEMAS = REPO / "hardened_spawner" / "telemetry" / "schemas"
GPU = "GPU-ops-0"
ALICE, BOB = "ops-alice", "ops-bob"
EXTRA = f"""
c.Spawner.poll_interval = 2
c.HardenedDockerSpawner.gpu_ids = [{GPU!r}]
c.HardenedDockerSpawner.profiles = [
    {{'slug': 'cpu', 'display_name': 'CPU', 'mem_limit': '512M', 'cpu_limit': 0.5, 'default': True}},
    {{'slug': 'gpu', 'display_name': 'GPU', 'mem_limit': '1G', 'cpu_limit': 0.5, 'gpus': 1,
      'gpu_idle_minutes': 0.5}},
    {{'slug': 'gpu-age', 'display_name': 'GPU, short lease', 'mem_limit': '512M', 'cpu_limit': 0.5, 'gpus': 1,
      'gpu_max_age_minutes': 0.35}},
    {{'slug': 'gpu-plain', 'display_name': 'GPU, never reclaimed', 'mem_limit': '512M', 'cpu_limit': 0.5,
      'gpus': 1}},
]
c.HardenedDockerSpawner.gpu_idle_warning_minutes = 0.25  # warned 15 s into the lease: the kernel is busy by then
c.HardenedDockerSpawner.gpu_reclaim_interval = 1
"""
P = "jupyterhub_hardened"
IDLE_SECONDS = 30
# alice's kernel runs code until this file exists in her container (test 3 creates it)
BUSY = "import os, time\nwhile not os.path.exists('/tmp/stop-now'):\n    time.sleep(0.5)"
KERNEL = {}


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, image):
    state = tmp_path_factory.mktemp("operations-hub")
    hub = Hub(state, EXTRA, env={"HS_EVENTS_LOG": str(state / "events.log")})
    hub.users.update({ALICE, BOB})
    hub.start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, hub.users)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: rig/install.sh installs Debian's chromium")
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def logged_in(browser, hub, user):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/]|localhost[:/])"), lambda route: route.abort())
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", "test-password")
    page.click("#login_submit")
    page.wait_for_load_state()
    return page


def shot(page, name):
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def scrape(hub):
    """``{(metric sample name, frozenset(labels)): value}`` from the hub's /hub/metrics."""
    r = requests.get(f"{hub.url}/hub/metrics", headers={"Authorization": f"token {hub.token}"}, timeout=30)
    assert r.status_code == 200, r.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def metric(samples, name, **labels):
    """The value of the sample ``name`` whose labels include ``labels`` (0 when absent)."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def audit_of(hub, event, user=None):
    return [e for e in hub.audit() if e["event"] == event and (user is None or e.get("user") == user)]


def spawn(hub, user, profile):
    events = hub.spawn_and_wait(user, {"profile": profile})
    return events[-1]


def gpu_label(dclient, user):
    [c] = containers_of(dclient, user)
    return c["Labels"].get("hardened-spawner.gpus")


def test_metrics_and_events_move_during_real_spawns(hub, dclient):
    before = scrape(hub)
    assert metric(before, f"{P}_spawns_total", outcome="started") == 0
    assert spawn(hub, ALICE, "gpu").get("ready"), hub.log()[-3000:]
    asyncio.run(_run_code(hub, ALICE, BUSY))  # busy from now on: not reclaimed while tests 1 and 2 look at it
    KERNEL["busy_from"] = time.monotonic()
    last = spawn(hub, BOB, "gpu-plain")
    assert not last.get("ready") and "No GPU is free" in last["message"]
    after = scrape(hub)

    def moved(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert moved(f"{P}_spawns_total", outcome="started") == 1
    assert moved(f"{P}_spawns_total", outcome="denied") == 1
    assert moved(f"{P}_spawn_denials_total", reason="gpu-busy") == 1
    assert moved(f"{P}_admission_decisions_total", decision="admit", trigger="spawn") == 2  # both passed admission
    assert moved(f"{P}_admission_cache_lookups_total", cache="decision", result="cached") == 1  # bob's: cached
    assert moved(f"{P}_spawn_phase_duration_seconds_count", phase="admission") == 1
    assert moved(f"{P}_spawn_phase_duration_seconds_sum", phase="start") > 0
    assert moved(f"{P}_key_store_lookups_total", where="spawn", outcome="ok") == 2
    assert metric(after, f"{P}_gpus") == 1 and metric(after, f"{P}_gpus_free") == 0
    assert metric(after, f"{P}_gpu_leases", state="held") == 1
    assert metric(after, f"{P}_gpu_holders", gpu=GPU) == 1

    # the same decisions, as jupyter_events in the site's handler, each valid under its schema
    emitted = [json.loads(line) for line in (hub.state / "events.log").read_text().splitlines()]
    ours = [e for e in emitted if e["__schema__"].startswith("urn:hardened-spawner:events:")]
    schemas = {EventSchema(path).id: EventSchema(path) for path in SCHEMAS.glob("*.yaml")}
    for event in ours:
        schemas[event["__schema__"]].validate({k: v for k, v in event.items() if not k.startswith("__")})
    spawned = [e for e in ours if e["event"] == "spawn" and e["user"] == ALICE]
    denied = [e for e in ours if e["event"] == "spawn.denied" and e["user"] == BOB]
    assert len(spawned) == 1 and spawned[0]["__schema__"] == "urn:hardened-spawner:events:spawn"
    assert spawned[0]["limits"]["gpus"] == [GPU] and set(spawned[0]["phases"]) >= {"admission", "gpus", "start"}
    assert denied[0]["reason"] == "gpu-busy" and denied[0]["__schema_version__"] == "1"
    assert any(e["__schema__"].endswith("server-action") for e in emitted)  # JupyterHub's own, same handler


def test_the_gateways_refusals_reach_the_hubs_metrics(hub, tmp_path):
    before = metric(scrape(hub), f"{P}_logins_total", where="gateway", decision="deny")
    key = asyncssh.generate_private_key("ssh-ed25519")

    async def attempt():
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect("127.0.0.1", int(hub.env["HS_SSH_GATEWAY_PORT"]), username=BOB,
                                   client_keys=[key], known_hosts=None, connect_timeout=20)

    asyncio.run(attempt())
    wait_for(lambda: metric(scrape(hub), f"{P}_logins_total", where="gateway", decision="deny") == before + 1,
             20, "the gateway's refused login on /hub/metrics")
    lines = [json.loads(line) for line in (hub.state / "events.log").read_text().splitlines()]
    forwarded = [e for e in lines if e.get("event") == "ssh.gateway.auth" and e.get("user") == BOB]
    assert forwarded and forwarded[-1]["reporter"] == "ssh-gateway" and forwarded[-1]["decision"] == "deny"
    # reporting needs the reporting scope, which not even the admin role has
    r = hub.api("POST", "/hardened-spawner/events", json={"events": [{"event": "ssh.gateway.auth"}]})
    assert r.status_code == 403 and "custom:hardened-spawner:report-events" in r.text


def test_the_operations_page_shows_leases_decisions_and_pictures(hub, browser):
    page = logged_in(browser, hub, "admin")
    page.goto(f"{hub.url}/hub/operations")
    expect(page.get_by_role("heading", name="Operations", exact=True)).to_be_visible()
    cell = page.locator(f'svg.hs-gpu-grid g.gpu-held[data-gpu="{GPU}"]')
    expect(cell).to_have_count(1)
    expect(cell).to_contain_text(ALICE)
    lease = page.locator("tr.hs-lease")
    expect(lease).to_have_count(1)
    expect(lease).to_contain_text(ALICE)
    expect(lease).to_contain_text(GPU)
    expect(lease.get_by_role("button", name="Stop the server and release")).to_be_visible()
    expect(page.locator("svg.hs-denials rect.denial-bar")).to_have_count(1)
    expect(page.locator("svg.hs-denials")).to_contain_text("gpu-busy (1)")
    verdict = page.locator("tr.hs-verdict")
    expect(verdict).to_have_count(1)
    expect(verdict).to_contain_text("admit")
    expect(page.locator("tr.hs-admission")).to_have_count(2)
    expect(page.get_by_role("link", name="Operations")).to_be_visible()
    shot(page, "1-operations-page")

    before = metric(scrape(hub), f"{P}_admission_decisions_total", decision="admit", trigger="recheck")
    verdict.get_by_role("button", name="Re-check").click()
    expect(page.get_by_role("status")).to_contain_text("Re-checked")
    expect(verdict).to_contain_text("re-checked by admin")
    shot(page, "2-image-rechecked")
    assert metric(scrape(hub), f"{P}_admission_decisions_total", decision="admit", trigger="recheck") == before + 1
    [recheck] = [e for e in audit_of(hub, "admission") if e.get("trigger") == "recheck"]
    assert recheck["actor"] == "admin" and recheck["cache"] == "computed"  # the cached decision was forgotten

    # a form post without the hub's XSRF token is refused, and nothing is released
    r = page.request.post(f"{hub.url}/hub/operations/release", form={"pool": "x", "holder": "y"})
    assert r.status == 403, r.text()
    # users without admin scopes see nothing
    other = logged_in(browser, hub, BOB)
    assert other.goto(f"{hub.url}/hub/operations").status == 403
    assert other.request.post(f"{hub.url}/hub/operations/recheck", form={"image": "x"}).status == 403


async def _run_code(hub, user, code):
    """Start a kernel in the user's server and have it run ``code`` (the websocket then closes; it keeps running)."""
    headers = {"Authorization": f"token {hub.token}"}
    r = requests.post(f"{hub.url}/user/{user}/api/kernels", headers=headers, json={}, timeout=60)
    assert r.status_code == 201, r.text
    kernel = r.json()["id"]
    url = f"ws://{hub.url.split('://', 1)[1]}/user/{user}/api/kernels/{kernel}/channels"
    ws = await websocket_connect(HTTPRequest(url, headers=headers))
    session = uuid.uuid4().hex
    await ws.write_message(json.dumps({
        "header": {"msg_id": uuid.uuid4().hex, "username": "test", "session": session, "msg_type": "execute_request",
                   "version": "5.3", "date": "2026-01-01T00:00:00Z"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    while True:  # until the kernel says it is busy with our request
        message = json.loads(await ws.read_message())
        if message.get("msg_type") == "status" and message["content"]["execution_state"] == "busy":
            break
    ws.close()


def test_an_idle_gpu_server_is_warned_then_stopped_and_the_next_user_gets_its_gpu(hub, browser, dclient):
    time.sleep(max(0.0, KERNEL["busy_from"] + IDLE_SECONDS + 3 - time.monotonic()))
    # longer than gpu_idle_minutes since the lease began: running code is activity
    assert audit_of(hub, "gpu.idle-warning", ALICE) == [] and hub.server(ALICE)
    page = logged_in(browser, hub, ALICE)
    [container] = containers_of(dclient, ALICE)
    run = dclient.exec_create(container["Id"], ["touch", "/tmp/stop-now"])
    dclient.exec_start(run["Id"])
    idle_from = time.monotonic()

    [warning] = wait_for(lambda: audit_of(hub, "gpu.idle-warning", ALICE), 30, "the idle warning")
    assert warning["reason"] == "idle" and warning["activity_source"] == "server" and warning["gpus"] == [GPU]
    page.goto(f"{hub.url}/hub/home")
    notice = page.locator(".hs-gpu-notice")
    expect(notice).to_contain_text("its kernels have been idle since")
    expect(notice).to_contain_text("to free the GPU for others")
    shot(page, "3-user-warned-on-the-hub")

    [reclaim] = wait_for(lambda: audit_of(hub, "gpu.reclaim", ALICE), 60, "the reclaim")
    assert reclaim["reason"] == "idle" and time.monotonic() - idle_from >= IDLE_SECONDS - 2
    wait_for(lambda: not hub.server(ALICE), 60, "alice's server to stop")
    released = [e for e in audit_of(hub, "gpu.release", ALICE) if e["reason"] == "stopped"]
    assert released and released[-1]["gpus"] == [GPU]
    samples = scrape(hub)
    assert metric(samples, f"{P}_gpus_free") == 1 and metric(samples, f"{P}_gpu_reclaims_total", reason="idle") == 1
    page.goto(f"{hub.url}/hub/home")
    expect(page.locator(".hs-gpu-notice")).to_contain_text("went back to the pool")
    shot(page, "4-user-told-the-server-was-stopped")

    assert spawn(hub, BOB, "gpu-plain").get("ready")
    assert gpu_label(dclient, BOB) == GPU


def test_an_admin_releases_a_lease_and_a_lease_past_its_maximum_age_is_reclaimed(hub, browser, dclient):
    page = logged_in(browser, hub, "admin")
    page.goto(f"{hub.url}/hub/operations")
    row = page.locator("tr.hs-lease", has_text=BOB)
    row.get_by_role("button", name="Stop the server and release").click()
    expect(page.get_by_role("status")).to_contain_text("Released the GPU lease")
    wait_for(lambda: not hub.server(BOB), 60, "bob's server to stop")
    [admin] = [e for e in audit_of(hub, "gpu.reclaim", BOB)]
    assert admin["reason"] == "admin" and admin["actor"] == "admin"
    page.goto(f"{hub.url}/hub/operations")
    expect(page.locator(f'svg.hs-gpu-grid g.gpu-free[data-gpu="{GPU}"]')).to_have_count(1)
    shot(page, "5-lease-released")

    started = time.monotonic()
    assert spawn(hub, ALICE, "gpu-age").get("ready")
    [reclaim] = wait_for(lambda: [e for e in audit_of(hub, "gpu.reclaim", ALICE) if e["reason"] == "max-age"],
                         90, "the max-age reclaim")
    assert time.monotonic() - started >= 0.35 * 60 - 5
    assert reclaim["max_age_minutes"] == 0.35
    wait_for(lambda: not hub.server(ALICE), 60, "alice's server to stop")
    assert metric(scrape(hub), f"{P}_gpus_free") == 1
