"""The production deployment (deploy/, docs/deployment.md), brought up once for the module on the rig's
daemon (tests/deployrig.py). Through nginx over TLS: a bad secret file starts nothing; login at the IdP;
spawns; a browser that trusts the test's CA; a WebSocket; the SSH gateway's port; one user's container
reaches no other user's server while the hub reaches both; a hub restart keeps servers running and
reachable and GPU leases exact; replacing the hub with a newer image (the documented upgrade) keeps
them too, and SSH and key delivery work through the replaced hub.
"""

import io
import os
import re
import socket
import ssl
import subprocess
import time

import pytest
import requests
from deployrig import api, browser_login, compose, deployed, hub_audit, progress, project_containers, start, \
    up, wait_for_server
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from conftest import containers_of
from sshrig import run_ssh

pytestmark = [pytest.mark.docker, pytest.mark.hub]

USERS = ("depalice", "depbob")
GPU_USER = "depcarol"  # logs in after the restart
BROWSER_USER = "depdave"  # logs in with Chromium, which trusts the test's CA


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, dclient, image):
    users = {"depalice": ["staff", "ml-gpu"], "depbob": ["staff"], GPU_USER: ["staff", "ml-gpu"], BROWSER_USER: ["staff"]}
    with deployed(tmp_path_factory.mktemp("deployment"), dclient, users) as deployment:
        yield deployment


def test_a_bad_secret_file_starts_nothing(deployment, dclient):
    cookie = deployment["secrets"] / "hub" / "cookie_secret"
    cookie.chmod(0o644)
    try:
        r = compose(deployment["env"], "up", "-d", check=False)
        assert r.returncode != 0
        logs = compose(deployment["env"], "logs", "--no-color", "secrets").stdout
        assert "hub/cookie_secret (JupyterHub's cookie secret) has mode 0644, so others may read it: chmod 600" in logs
        assert "nothing was started" in logs
        assert set(project_containers(dclient)) == {"secrets"}  # no db, hub or nginx was even created
    finally:
        cookie.chmod(0o600)
        compose(deployment["env"], "rm", "-f", "-s", check=False)


@pytest.fixture(scope="module")
def running(deployment, dclient):
    """The deployment up, users logged in through nginx and their servers running."""
    up(deployment)
    assert set(project_containers(dclient)) == {"secrets", "db", "hub", "nginx"}
    for user, profile in zip(USERS, ("gpu-1", "cpu")):  # Alice holds the one GPU
        deployment["sessions"][user] = browser_login(deployment, user)
        r = start(deployment, user, profile)
        assert r.status_code == 200, r.text[-2000:]
    for user in USERS:
        wait_for_server(deployment, user)
    return deployment


def gpus_of(dclient, container):
    requests_ = dclient.inspect_container(container)["HostConfig"]["DeviceRequests"] or []
    return [g for r in requests_ for g in (r.get("DeviceIDs") or [])]


def test_login_and_spawn_through_nginx_over_tls(running, dclient):
    hub = project_containers(dclient)["hub"]
    for user in USERS:
        (c,) = containers_of(dclient, user)
        networks = dclient.inspect_container(c["Id"])["NetworkSettings"]["Networks"]
        assert list(networks) == [f"hardened-spawner-{user}"]  # a network of the user's own, the hub on it
        assert hub["Id"] in dclient.inspect_network(f"hardened-spawner-{user}")["Containers"]
    r = requests.get(running["url"].replace("https", "http").replace(running["env"]["HTTPS_PORT"],
                                                                      running["env"]["HTTP_PORT"]),
                     allow_redirects=False, timeout=10)
    assert r.status_code == 301 and r.headers["location"].startswith("https://")


def chromium(playwright, home):
    """Debian's Chromium with ``home`` as its HOME (its certificate store is ``home/.pki/nssdb``)."""
    from e2e.browsing import ARGS, CHROMIUM

    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, env={**os.environ, "HOME": str(home)})


def test_a_browser_that_trusts_the_ca_logs_in_through_nginx_spawns_and_opens_jupyterlab(running, tmp_path):
    """Chromium, no certificate errors ignored: the test's CA is in its NSS store (certutil), nothing else is."""
    from playwright.sync_api import Error, expect, sync_playwright

    from e2e.browsing import shot

    trusting, plain = tmp_path / "trusting", tmp_path / "plain"
    for home in (trusting, plain):
        (home / ".pki" / "nssdb").mkdir(parents=True)
        subprocess.run(["certutil", "-N", "-d", f"sql:{home}/.pki/nssdb", "--empty-password"], check=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{trusting}/.pki/nssdb", "-t", "C,,", "-n", "hardened-spawner test CA",
                    "-i", running["ca"]], check=True)
    url = running["url"]
    with sync_playwright() as p:
        browser = chromium(p, plain)
        with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):  # the control: the CA is what is trusted
            browser.new_page().goto(f"{url}/hub/")
        browser.close()
        browser = chromium(p, trusting)
        page = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{url}/hub/")
        page.get_by_role("button", name=re.compile("Sign in with")).click()
        expect(page.get_by_role("heading", name="Authorize Client")).to_be_visible()
        page.get_by_placeholder("sub").fill(BROWSER_USER)  # the demo IdP's login: a user name
        page.get_by_role("button", name="Authorize", exact=True).click()
        try:
            page.wait_for_url(re.compile(rf"/user/{BROWSER_USER}/"), timeout=240_000)  # one profile: it spawns at once
        except Error as e:
            # Chromium fails a page in flight when a network interface appears on the host (other tests'
            # containers and networks, net::ERR_NETWORK_CHANGED), maybe before the redirect that starts the
            # spawn; a user asks for their server again (the hub's spawn page starts it or shows its progress).
            if "ERR_NETWORK_CHANGED" not in str(e):
                raise
            page.goto(f"{url}/hub/spawn/{BROWSER_USER}", timeout=240_000)
            page.wait_for_url(re.compile(rf"/user/{BROWSER_USER}/"), timeout=240_000)
        expect(page).to_have_title(re.compile("JupyterLab"), timeout=120_000)
        expect(page.locator(".jp-LauncherCard").first).to_be_visible(timeout=120_000)
        assert page.url.startswith(f"{url}/user/{BROWSER_USER}/"), page.url
        shot(page, "deployment-jupyterlab-through-nginx")
        browser.close()


async def test_websockets_pass_nginx(running):
    session = running["sessions"]["depalice"]
    ctx = ssl.create_default_context(cafile=running["ca"])
    cookies = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    url = running["url"].replace("https", "wss") + "/user/depalice/api/events/subscribe"
    ws = await websocket_connect(HTTPRequest(url, headers={"Cookie": cookies, "Origin": running["url"]},
                                             ssl_options=ctx))
    ws.close()


def test_the_ssh_gateway_port_passes_nginx(running):
    with socket.create_connection(("127.0.0.1", int(running["env"]["SSH_PORT"])), timeout=10) as s:
        assert s.recv(64).startswith(b"SSH-2.0-")


def probe(dclient, container, address, ports=(8888, 2222), python="python3"):
    code = ("import socket\nfor port in %r:\n    s = socket.socket(); s.settimeout(3)\n"
            "    print(port, s.connect_ex((%r, port)))\n") % (ports, address)
    exec_id = dclient.exec_create(container, [python, "-c", code])
    out = dclient.exec_start(exec_id).decode()
    assert dclient.exec_inspect(exec_id)["ExitCode"] == 0, out
    return dict(line.split() for line in out.splitlines())


def test_one_users_container_reaches_no_other_users_server(running, dclient):
    (alice,) = containers_of(dclient, "depalice")
    (bob,) = containers_of(dclient, "depbob")
    address = dclient.inspect_container(alice["Id"])["NetworkSettings"]["Networks"]["hardened-spawner-depalice"][
        "IPAddress"]
    assert probe(dclient, bob["Id"], address)["8888"] != "0"
    hub = project_containers(dclient)["hub"]["Id"]
    assert probe(dclient, hub, address, (8888,))["8888"] == "0"  # the hub reaches it


def test_a_hub_restart_keeps_servers_running_and_reachable_and_gpu_leases_exact(running, dclient):
    before = {u: containers_of(dclient, u)[0]["Id"] for u in USERS}
    assert gpus_of(dclient, before["depalice"]) == ["0"]
    old_hub = project_containers(dclient)["hub"]["Id"]
    compose(running["env"], "restart", "hub")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        health = dclient.inspect_container(old_hub)["State"].get("Health", {})
        if health.get("Status") == "healthy":
            break
        time.sleep(2)
    for user in USERS:  # the same containers, reachable through nginx and the restarted proxy
        assert [c["Id"] for c in containers_of(dclient, user)] == [before[user]]
        wait_for_server(running, user, timeout=60)
    # The restarted hub recovers Alice's lease from Docker: Carol's GPU spawn is refused, not given GPU 0.
    running["sessions"][GPU_USER] = browser_login(running, GPU_USER)
    r = api(running, GPU_USER, "POST", f"/users/{GPU_USER}/server", json={"profile": "gpu-1"})
    last = r.json() if r.status_code == 503 else progress(running, GPU_USER)[-1]
    assert last.get("reason") == "gpu-busy", last
    assert containers_of(dclient, GPU_USER) == []
    recovered = [e for e in hub_audit(dclient) if e["event"] == "gpu.recover"]
    assert [(e["owner"], e["gpus"]) for e in recovered] == [("depalice", ["0"])], recovered
    # Exactly: once Alice's server stops, the GPU is Carol's.
    assert api(running, "depalice", "DELETE", "/users/depalice/server").status_code in (202, 204)
    deadline = time.monotonic() + 60
    while containers_of(dclient, "depalice") and time.monotonic() < deadline:
        time.sleep(1)
    r = api(running, GPU_USER, "POST", f"/users/{GPU_USER}/server", json={"profile": "gpu-1"})
    assert r.status_code in (201, 202), r.text
    deadline = time.monotonic() + 120
    while not containers_of(dclient, GPU_USER) and time.monotonic() < deadline:
        time.sleep(1)
    (carol,) = containers_of(dclient, GPU_USER)
    assert gpus_of(dclient, carol["Id"]) == ["0"]


def ssh_config(running, work, user, key):
    """The gateway (its host key pinned, through nginx's SSH port) and the user's server behind it, its host
    certificate checked against the hub's CA (the @cert-authority line docs/ssh-users.md gives)."""
    public = (running["secrets"] / "hub" / "ssh_gateway_host_key.pub").read_text().split()[:2]
    ca = (running["secrets"] / "hub" / "ssh_host_ca_key.pub").read_text().split()[:2]
    known = work / "known_hosts"
    known.write_text(f"[127.0.0.1]:{running['env']['SSH_PORT']} {' '.join(public)}\n"
                     f"@cert-authority {user},{user}.* {' '.join(ca)}\n")
    config = work / f"ssh_config_{key.name}"
    config.write_text(f"""\
Host gateway
    HostName 127.0.0.1
    Port {running['env']['SSH_PORT']}
    User {user}
    UserKnownHostsFile {known}
    StrictHostKeyChecking yes
Host * !gateway
    User jovyan
    ProxyJump gateway
    UserKnownHostsFile {known}
    StrictHostKeyChecking yes
Host *
    IdentityFile {key}
    IdentitiesOnly yes
    BatchMode yes
    ConnectTimeout 15
""")
    return ["ssh", "-F", str(config), user]


def add_key_on_page(running, user, public_line):
    session = running["sessions"][user]
    page = session.get(f"{running['url']}/services/ssh-keys/users/{user}", timeout=60)  # OAuth to the service
    assert page.status_code == 200 and "SSH keys" in page.text, page.text[-2000:]
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    r = session.post(f"{running['url']}/services/ssh-keys/users/{user}/add", timeout=60,
                     data={"_xsrf": xsrf, "key": public_line})
    assert r.status_code == 200 and "added" in r.text, r.text[-2000:]


def ssh_until(command, timeout=60):
    """The first run of ``command true`` that works (a new key reaches the server within seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        r = run_ssh([*command, "echo", "in-the-server"], timeout=60)
        if r.returncode == 0 or time.monotonic() > deadline:
            return r
        time.sleep(1)


def test_replacing_the_hub_with_a_newer_image_keeps_servers_and_ssh_and_key_delivery(running, dclient, tmp_path):
    """The upgrade docs/deployment.md gives: a newer hub image, ``docker-compose up -d hub``."""
    users = ("depbob", GPU_USER)
    before = {u: containers_of(dclient, u)[0]["Id"] for u in users}
    keys = {}
    for name in ("before", "after"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
        keys[name] = tmp_path / name
    add_key_on_page(running, "depbob", (tmp_path / "before.pub").read_text().strip())
    ssh_before = ssh_config(running, tmp_path, "depbob", keys["before"])
    r = ssh_until(ssh_before)
    assert r.returncode == 0 and "in-the-server" in r.stdout, r.stderr[-2000:]
    session = subprocess.Popen([*ssh_before, "echo open; sleep 600"], stdout=subprocess.PIPE, text=True)
    assert session.stdout.readline().strip() == "open"

    old = project_containers(dclient)["hub"]
    old_version = dclient.inspect_image(old["ImageID"])["Config"]["Labels"]["org.opencontainers.image.version"]
    newer = "hardened-spawner/hub:deploytest-next"
    dockerfile = f"FROM {old['ImageID']}\nLABEL org.opencontainers.image.version={old_version}.next\n"
    list(dclient.build(fileobj=io.BytesIO(dockerfile.encode()), tag=newer, rm=True))
    env = {**running["env"], "HUB_IMAGE": newer}
    try:
        compose(env, "up", "-d", "hub")
        hub = project_containers(dclient)["hub"]
        assert hub["Id"] != old["Id"] and hub["Image"] == newer
        deadline = time.monotonic() + 180
        while dclient.inspect_container(hub["Id"])["State"].get("Health", {}).get("Status") != "healthy":
            assert time.monotonic() < deadline, "the replaced hub did not become healthy"
            time.sleep(2)
        # The gateway was in the old container: its session ended; the client reconnects.
        assert session.wait(timeout=60) != 0
        for user in users:  # the same containers, reachable through nginx (which resolves the new hub)
            assert [c["Id"] for c in containers_of(dclient, user)] == [before[user]]
            wait_for_server(running, user, timeout=90)
        r = ssh_until(ssh_before)
        assert r.returncode == 0 and "in-the-server" in r.stdout, r.stderr[-2000:]
        # A key added through the new hub reaches the server that kept running.
        add_key_on_page(running, "depbob", (tmp_path / "after.pub").read_text().strip())
        r = ssh_until(ssh_config(running, tmp_path, "depbob", keys["after"]))
        assert r.returncode == 0 and "in-the-server" in r.stdout, r.stderr[-2000:]
        # The audit log lives on the hub-data volume: the old hub's records are there, the new hub appends.
        events = [e["event"] for e in hub_audit(dclient)]
        assert "gpu.recover" in events and events.count("ssh.keys.added") >= 2, events[-40:]
    finally:
        if session.poll() is None:
            session.kill()
        dclient.remove_image(newer, force=True)  # its container goes with the module's compose down
