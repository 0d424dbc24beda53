"""Helpers of the browser tests: a page that may only reach loopback, screenshots, the IdP login walk."""

import re

from playwright.sync_api import expect

from hubrig import REPO

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = REPO / "artifacts" / "e2e"


def new_page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/]|localhost[:/])"), lambda route: route.abort())
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


def shot(page, name):
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page, hub, user, prefix, landing=r"/hub/spawn"):
    """From the hub's front door, through the IdP's page, back into the hub at ``landing``."""
    page.goto(f"{hub.url}/hub/")
    expect(page).to_have_url(re.compile(r"/hub/login"))
    sign_in = page.get_by_role("button", name=re.compile("Sign in with the demo identity provider"))
    expect(sign_in).to_be_visible()
    shot(page, f"{prefix}-1-hub-login")
    sign_in.click()
    pick_idp_user(page, user, prefix)
    expect(page).to_have_url(re.compile(landing))


def pick_idp_user(page, user, prefix):
    """On the demo IdP's page, log in as ``user``."""
    expect(page.get_by_role("heading", name="Authorize Client")).to_be_visible()
    shot(page, f"{prefix}-2-idp-login")
    page.get_by_role("button", name=user, exact=True).click()
