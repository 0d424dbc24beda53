"""SSH keys set up by users themselves, in a real browser (Debian's Chromium, Playwright).

The hub runs the repository's jupyterhub_config.py against the demo identity
provider, with keys from the IdP's ``ssh_public_keys`` claim combined with
the file store users manage on the "SSH keys" page. A real OpenSSH client
then uses what the pages show, through the gateway, without any restart.
Screenshots (for docs/ssh-users.md) go to artifacts/e2e-ssh/.
"""

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from hubrig import REPO, Hub, remove_user_artifacts
from oidcrig import hub_env
from sshrig import run_ssh

pytestmark = [pytest.mark.hub, pytest.mark.docker]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = REPO / "artifacts" / "e2e-ssh"
REFRESH_AGE = 3
USERS = ("bob", "carol")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e-ssh-keys")
    made = {}
    for name in ("bob", "carol-idp"):
        path = work / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@laptop", "-f", str(path)],
                       check=True)
        made[name] = (path, path.with_suffix(".pub").read_text().strip())
    return made


@pytest.fixture(scope="module")
def hub(idp, keys, tmp_path_factory, dclient):
    env = {**hub_env(idp, REFRESH_AGE), "HS_SSH_IDP_KEYS": "1", "HS_GPU_IDS": "GPU-e2e-ssh-0"}
    extra = "c.HardenedDockerSpawner.http_timeout = 300\nc.HardenedDockerSpawner.start_timeout = 360\n"
    idp.set_user("carol", ["staff", "hub-admins"], ssh_public_keys=[keys["carol-idp"][1]])
    hub = Hub(tmp_path_factory.mktemp("e2e-ssh-hub"), extra, env=env)
    hub.users.update(USERS)
    hub.start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, USERS)


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


def new_page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/]|localhost[:/])"), lambda route: route.abort())
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


def shot(page, name, locator=None):
    (locator or page).screenshot(path=str(SHOTS / f"{name}.png"), **({} if locator else {"full_page": True}))


def log_in_and_wait_for_server(page, hub, user):
    """Through the IdP's page; a user with one profile gets their server started at once."""
    page.goto(f"{hub.url}/hub/")
    page.get_by_role("button", name=re.compile("Sign in with the demo identity provider")).click()
    page.get_by_role("button", name=user, exact=True).click()
    page.wait_for_url(re.compile(f"/user/{user}/"), timeout=400_000)


def openssh(work, user, known_hosts_line, key, command_line, *remote):
    """Run ``command_line`` as the home page shows it, with real ssh: the gateway's host key pinned.

    (``ssh -J`` passes only ``-F`` to the jump, so the settings are in a config file.)
    """
    known = work / f"known_hosts_{user}"
    known.write_text(known_hosts_line + "\n")
    config = work / f"ssh_config_{user}"
    config.write_text(f"Host *\n    UserKnownHostsFile {known}\n    StrictHostKeyChecking accept-new\n"
                      f"    IdentityFile {key}\n    IdentitiesOnly yes\n    BatchMode yes\n    ConnectTimeout 20\n")
    argv = command_line.split()
    return subprocess.run([argv[0], "-F", str(config), *argv[1:], *remote], capture_output=True, text=True,
                          timeout=90)


def until_ok(run, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        r = run()
        if r.returncode == 0 or time.monotonic() > deadline:
            return r
        time.sleep(1)


def fingerprint_of(public_line):
    return subprocess.run(["ssh-keygen", "-lf", "-"], input=public_line, capture_output=True, text=True,
                          check=True).stdout.split()[1]


def test_bob_adds_a_key_uses_it_at_once_and_removing_it_closes_his_session(hub, browser, keys, tmp_path):
    page = new_page(browser)
    log_in_and_wait_for_server(page, hub, "bob")

    page.goto(f"{hub.url}/hub/home")
    expect(page.locator("#hs-ssh-no-keys")).to_be_visible()
    shot(page, "ssh-1-home-no-key", page.locator("#hs-ssh"))
    page.locator("#hs-ssh-keys-link").click()
    expect(page.get_by_role("heading", name="SSH keys")).to_be_visible()
    expect(page.locator("#hs-keys-none")).to_be_visible()
    shot(page, "ssh-2-keys-page-empty")

    private_key = keys["bob"][0].read_text()
    page.get_by_label("Add a public key").fill(private_key)
    page.get_by_role("button", name="Add key").click()
    expect(page.locator("#hs-keys-error")).to_contain_text("That is a PRIVATE key")
    expect(page.locator("#hs-keys-none")).to_be_visible()  # nothing was added
    shot(page, "ssh-3-private-key-refused")

    fingerprint = fingerprint_of(keys["bob"][1])
    page.get_by_label("Add a public key").fill(keys["bob"][1])
    added_at = time.monotonic()
    page.get_by_role("button", name="Add key").click()
    expect(page.locator("#hs-keys-message")).to_have_text(f"Key {fingerprint} (ssh-ed25519) added.")
    expect(page.locator("#hs-keys-deliveries")).to_contain_text("keys updated now, no restart needed")
    expect(page.locator(f'tr[data-fingerprint="{fingerprint}"]')).to_contain_text("bob@laptop")
    shot(page, "ssh-4-key-added")

    page.goto(f"{hub.url}/hub/home")
    expect(page.locator("#hs-ssh-fingerprints")).to_contain_text(fingerprint)
    command = page.locator("#hs-ssh-command").inner_text().strip()
    known_hosts = page.locator("#hs-ssh-known-hosts").inner_text().strip()
    host_key = page.locator("#hs-ssh-host-key").inner_text().strip()
    config_text = page.locator("#hs-ssh-config").inner_text()
    shot(page, "ssh-5-home-with-key", page.locator("#hs-ssh"))
    port = hub.env["HS_SSH_GATEWAY_PORT"]
    assert command == f"ssh -J bob@127.0.0.1:{port} jovyan@bob"
    public_host_key = (hub.state / "ssh_gateway_host_ed25519_key.pub").read_text().strip()
    assert host_key == fingerprint_of(public_host_key) and known_hosts.endswith(" ".join(public_host_key.split()[:2]))

    # the exact command from the page, the gateway's host key pinned from the page, no restart
    r = until_ok(lambda: openssh(tmp_path, "bob", known_hosts, keys["bob"][0], command, "id -un"))
    assert r.returncode == 0 and r.stdout.strip() == "jovyan", r.stderr
    print(f"key added in the browser -> ssh works: {time.monotonic() - added_at:.1f} s")
    # the ~/.ssh/config snippet from the page works as shown (with the test's key and known_hosts)
    config = tmp_path / "ssh_config"
    config.write_text(f"Host *\n    UserKnownHostsFile {tmp_path / 'known_hosts_bob'}\n    BatchMode yes\n"
                      f"    IdentitiesOnly yes\n\n" + config_text.replace("~/.ssh/id_ed25519", str(keys["bob"][0])))
    r = run_ssh(["ssh", "-F", str(config), "bob", "hostname"], timeout=90)
    assert r.returncode == 0, r.stderr

    session = subprocess.Popen(["ssh", "-F", str(config), "bob", "echo open; sleep 600"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert session.stdout.readline().strip() == "open"
        page.goto(f"{hub.url}/services/ssh-keys/")
        page.get_by_role("button", name=f"Remove key {fingerprint}").click()
        expect(page.locator("#hs-keys-message")).to_have_text(f"Key {fingerprint} removed.")
        shot(page, "ssh-6-key-removed")
        assert session.wait(timeout=30) == 255  # the open session is closed
    finally:
        session.kill()
    r = run_ssh(["ssh", "-F", str(config), "bob", "true"], timeout=90)
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr


def test_carol_uses_her_identity_provider_key_and_manages_bobs_keys(hub, idp, browser, keys, tmp_path):
    page = new_page(browser)
    log_in_and_wait_for_server(page, hub, "carol")
    idp_fingerprint = fingerprint_of(keys["carol-idp"][1])

    page.goto(f"{hub.url}/services/ssh-keys/")
    row = page.locator(f'tr[data-fingerprint="{idp_fingerprint}"]')
    expect(row).to_contain_text("from the identity provider")
    expect(row.get_by_role("button")).to_have_count(0)  # change it at the IdP, not here
    expect(page.get_by_label("Manage another user's keys")).to_be_visible()  # a hub admin
    shot(page, "ssh-7-idp-key-and-admin")
    page.get_by_label("Manage another user's keys").fill("bob")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("heading", name=re.compile("SSH keys\\s+of bob"))).to_be_visible()
    shot(page, "ssh-8-admin-views-bob")

    page.goto(f"{hub.url}/hub/home")
    command = page.locator("#hs-ssh-command").inner_text().strip()
    known_hosts = page.locator("#hs-ssh-known-hosts").inner_text().strip()
    expect(page.locator("#hs-ssh-fingerprints")).to_contain_text(idp_fingerprint)
    r = until_ok(lambda: openssh(tmp_path, "carol", known_hosts, keys["carol-idp"][0], command, "id -un"))
    assert r.returncode == 0 and r.stdout.strip() == "jovyan", r.stderr

    idp.set_user("carol", ["staff", "hub-admins"])  # the IdP drops her key
    time.sleep(REFRESH_AGE + 1)
    page.goto(f"{hub.url}/hub/home")  # the next hub request refreshes her auth_state
    expect(page.locator("#hs-ssh-no-keys")).to_be_visible()
    r = openssh(tmp_path, "carol", known_hosts, keys["carol-idp"][0], command, "true")
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr
