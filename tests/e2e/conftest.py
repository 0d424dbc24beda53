"""The browser for the end-to-end tests: Debian's Chromium driven by Playwright, one per session.

Screenshots of this run (and only this run) are left in artifacts/e2e/.
"""

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from browsing import ARGS, CHROMIUM, SHOTS


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: rig/install.sh installs Debian's chromium")
    shutil.rmtree(SHOTS, ignore_errors=True)  # only this run's screenshots
    SHOTS.mkdir(parents=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()
