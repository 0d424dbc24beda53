"""What people see when the hub says no, in a real browser (issue 17).

The hub runs the repository's jupyterhub_config.py with HardenedOAuthenticator
against the demo provider, an admission allowlist of ``hardened-spawner/*``
and an image ``untrusted`` (the single-user image tagged
untrusted.example/browser-refusals:latest) that it refuses. Screenshots:

- refusal-1: a stale form (the user lost the GPU group after it rendered): the
  spawn form says why and what to do, with the reference id;
- refusal-2: an image the policy refuses: the findings as a table (rule, what
  is wrong, how to fix it) where the refusal lands (the form or the progress page);
- refusal-3: the "Spawn failed" page with the same table;
- withdrawn-1: after the IdP withdrew bob's access, the page that says so, when,
  why and what to do; withdrawn-2: his next login, refused, saying why.

Each page's reference id is the one on its audit line; the hub log has one
WARNING line per refusal and no traceback.
"""

import re
import time

import pytest
from playwright.sync_api import expect

from e2e.browsing import log_in, new_page, pick_idp_user, shot
from hubrig import Hub, remove_user_artifacts
from oidcrig import hub_env

pytestmark = [pytest.mark.hub, pytest.mark.docker]

REFRESH_AGE = 2
USERS = ("alice", "bob")
UNTRUSTED = "untrusted.example/browser-refusals:latest"
REF = re.compile(r"[2-9A-Z]{4}-[2-9A-Z]{4}")


@pytest.fixture(scope="module")
def hub(idp, tmp_path_factory, dclient, image):
    dclient.tag(image, "untrusted.example/browser-refusals", "latest")
    env = {**hub_env(idp, REFRESH_AGE), "HS_GPU_IDS": "GPU-e2e-refusals-0"}
    extra = ("c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 10}\n"
             f"c.HardenedDockerSpawner.allowed_images = {{'default': {image!r}, 'untrusted': {UNTRUSTED!r}}}\n"
             "c.HardenedDockerSpawner.admission_image_allowlist = ['hardened-spawner/*']\n")
    hub = Hub(tmp_path_factory.mktemp("e2e-refusals-hub"), extra, env=env)
    hub.users.update(USERS)
    hub.start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, USERS)
    dclient.remove_image(UNTRUSTED)


def audit_line(hub, event, ref):
    lines = [e for e in hub.audit() if e["event"] == event and e.get("ref") == ref]
    assert len(lines) == 1, (event, ref, [e for e in hub.audit() if e["event"] == event])
    return lines[0]


def logged_once_as_warning(hub, ref):
    lines = [line for line in hub.log().splitlines() if f"[ref {ref}]" in line]
    assert len(lines) == 1 and lines[0].startswith("[W "), lines
    assert "Traceback" not in hub.log()


def shown_ref(refusal):
    return refusal.locator(".hs-ref").inner_text()


def test_a_stale_form_is_refused_on_the_form_with_what_to_do(hub, idp, browser):
    page = new_page(browser)
    log_in(page, hub, "alice", "refusal-alice")
    gpu = page.get_by_label(re.compile(r"One GPU"))
    expect(gpu).to_be_visible()
    idp.set_user("alice", ["staff"])  # the IdP takes the GPU group away while the form is open
    try:
        time.sleep(REFRESH_AGE + 1)
        gpu.check()
        page.get_by_role("button", name=re.compile("Start")).click()
        refusal = page.locator(".spawn-error-msg .hs-refusal")
        expect(refusal).to_be_visible()
        expect(page).to_have_url(re.compile(r"/hub/spawn"))
        expect(refusal).to_contain_text("You may not use profile 'gpu-1'")
        expect(refusal.locator(".hs-todo li").first).to_have_text("Pick another profile or image and start again.")
        expect(page.get_by_label(re.compile(r"One GPU"))).to_have_count(0)  # the form now offers what she may use
        shot(page, "refusal-1-spawn-form-not-entitled")
        ref = shown_ref(refusal)
        line = audit_line(hub, "spawn.denied", ref)
        assert (line["user"], line["reason"], line["status"]) == ("alice", "not-entitled", 403)
        logged_once_as_warning(hub, ref)
    finally:
        idp.set_user("alice", ["staff", "ml-gpu"])


def test_an_image_refused_by_policy_shows_its_findings(hub, browser):
    page = new_page(browser)
    log_in(page, hub, "alice", "refusal-image")
    page.get_by_label(re.compile(r"^CPU")).check()
    page.locator("select[name='image-cpu']").select_option("untrusted")
    page.get_by_role("button", name=re.compile("Start")).click()
    refusal = page.locator(".hs-refusal").first
    expect(refusal).to_be_visible(timeout=120_000)
    where = "progress" if "/spawn-pending/" in page.url else "spawn-form"
    check_findings(refusal)
    shot(page, f"refusal-2-image-denied-on-the-{where}")
    ref = shown_ref(refusal)
    line = audit_line(hub, "spawn.denied", ref)
    assert (line["reason"], line["status"], line["image"]) == ("image-denied", 403, UNTRUSTED)
    assert {f["rule"] for f in line["findings"]} >= {"image.not-allowlisted", "image.tag-latest"}

    page.goto(f"{hub.url}/hub/spawn-pending/alice")
    expect(page.get_by_role("heading", name="Spawn failed")).to_be_visible()
    failed = page.locator(".hs-refusal")
    check_findings(failed)
    assert shown_ref(failed) == ref
    shot(page, "refusal-3-spawn-failed-page")
    logged_once_as_warning(hub, ref)


def check_findings(refusal):
    expect(refusal).to_contain_text(f"The image {UNTRUSTED} was refused by this hub's image policy.")
    rows = refusal.locator(".hs-findings tbody tr")
    expect(rows.filter(has_text="image.not-allowlisted")).to_contain_text(
        "Use an image from an allowed registry/repository")
    expect(rows.filter(has_text="image.tag-latest")).to_contain_text("Reference the image by a fixed tag")
    expect(refusal.locator("thead")).to_contain_text("How to fix it")
    expect(refusal.locator(".hs-todo")).to_contain_text("Pick another profile or image and start again.")
    assert REF.fullmatch(shown_ref(refusal))


def test_withdrawn_access_is_explained_and_the_next_login_says_why(hub, idp, browser):
    page = new_page(browser)
    log_in(page, hub, "bob", "withdrawn-bob")
    page.get_by_role("button", name=re.compile("Start")).click()  # the default image
    page.wait_for_url(re.compile(r"/user/bob/"), timeout=150_000)
    idp.set_user("bob", [])
    try:
        time.sleep(REFRESH_AGE + 1)
        page.goto(f"{hub.url}/hub/home")
        expect(page).to_have_url(re.compile(r"/hub/login"))
        expect(page.get_by_role("heading", name="Your access was withdrawn")).to_be_visible()
        lead = page.locator("#hs-access-withdrawn .lead")
        expect(lead).to_contain_text("withdrawn by your identity provider on")
        expect(lead).to_contain_text("your identity-provider account is no longer in a group that may use this hub")
        expect(page.get_by_text("Your running server was stopped.")).to_be_visible()
        when, ref = page.locator("#hs-when").inner_text(), shown_ref(page)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d at \d\d:\d\d UTC", when)
        shot(page, "withdrawn-1-access-withdrawn-page")
        revoked = audit_line(hub, "auth.revoked", ref)
        assert revoked["reason"] == "no-matching-rule" and when in revoked["notice"]
        assert "no longer in a group that may use this hub" in revoked["notice"]

        page.get_by_role("button", name="Log in again").click()
        pick_idp_user(page, "bob", "withdrawn-bob-again")
        expect(page.get_by_role("heading", name="403 : Access withdrawn")).to_be_visible()
        refused = page.locator(".hs-login-refused")
        expect(refused).to_contain_text(
            "You could not log in: your identity-provider account is not in a group that may use this hub.")
        expect(refused.locator(".hs-history")).to_have_text(
            f"Your access was withdrawn by your identity provider on {when} for the same reason (reference {ref}).")
        shot(page, "withdrawn-2-next-login-refused")
        denied_ref = shown_ref(refused)
        denied = audit_line(hub, "login.denied", denied_ref)
        assert denied["reason"] == "no-matching-rule" and ref in denied["notice"]
        assert "Traceback" not in hub.log()
    finally:
        idp.set_user("bob", ["staff"])
