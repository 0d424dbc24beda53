"""The production deployment (deploy/, docs/deployment.md), brought up once for the module on the rig's daemon.

deploy/build.sh builds the hub image from the wheel, PostgreSQL and nginx on the debootstrap base;
docker-compose (Debian's 1.29) runs deploy/docker-compose.yml with secrets made here (root-owned,
0600), a TLS certificate from a CA made here, and the demo IdP on the docker0 address (where the
hub container reaches it). Then, through nginx over TLS: a bad secret file starts nothing; login at
the IdP; spawns; a WebSocket; the SSH gateway's port; one user's container reaches no other user's
server while the hub reaches both; a hub restart keeps servers running and reachable.
"""

import datetime
import json
import os
import re
import socket
import ssl
import subprocess
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from oidcrig import IdP, login
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from conftest import containers_of
from hubrig import IMAGE, REPO, free_port, remove_user_artifacts

from hardened_spawner.spawner.networks import bridge_gateway

pytestmark = [pytest.mark.docker, pytest.mark.hub]

PROJECT = "hsdeploytest"
USERS = ("depalice", "depbob")
GPU_USER = "depcarol"  # logs in after the restart
BROWSER_USER = "depdave"  # logs in with Chromium, which trusts the test's CA
COMPOSE = ["docker-compose", "-p", PROJECT, "-f", str(REPO / "deploy" / "docker-compose.yml")]


def make_tls(directory):
    """A CA (``ca.pem``) and, signed by it, nginx's key and certificate for ``localhost``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hardened-spawner test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    nginx = directory / "secrets" / "nginx"
    nginx.mkdir(parents=True, exist_ok=True)
    (nginx / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(nginx / "tls.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    os.close(fd)
    return directory / "ca.pem"


def compose(env, *args, check=True):
    r = subprocess.run([*COMPOSE, *args], env=env, capture_output=True, text=True, timeout=600)
    if check and r.returncode:
        raise AssertionError(f"docker-compose {' '.join(args)}: {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def project_containers(dclient):
    return {c["Labels"]["com.docker.compose.service"]: c
            for c in dclient.containers(all=True, filters={"label": f"com.docker.compose.project={PROJECT}"})}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, dclient, image):
    work = tmp_path_factory.mktemp("deployment")
    subprocess.run(["bash", str(REPO / "deploy" / "build.sh")], check=True, timeout=1800)
    ca = make_tls(work)
    secrets = work / "secrets"
    (secrets / "hub").mkdir(parents=True)
    (secrets / "hub" / "oidc_client_secret").write_text("demo-secret\n")  # the demo IdP takes any
    subprocess.run(["bash", str(REPO / "deploy" / "make-secrets.sh")], env={**os.environ, "SECRETS_DIR": str(secrets)},
                   check=True, capture_output=True)
    idp = IdP(work / "idp.log", host=bridge_gateway(dclient)).start()
    for user, groups in (("depalice", ["staff", "ml-gpu"]), ("depbob", ["staff"]), (GPU_USER, ["staff", "ml-gpu"]),
                         (BROWSER_USER, ["staff"])):
        idp.set_user(user, groups)
    https = free_port()
    env = {**os.environ, "HS_PUBLIC_URL": f"https://localhost:{https}", "HS_OIDC_ISSUER": idp.issuer,
           "HS_OIDC_CLIENT_ID": "hardened-spawner-deploy-test", "HS_SINGLEUSER_IMAGE": IMAGE, "HS_GPU_IDS": "0",
           "HTTPS_PORT": str(https), "HTTP_PORT": str(free_port()), "SSH_PORT": str(free_port()),
           "SECRETS_DIR": str(secrets), "DOCKER_SOCKET": os.environ["DOCKER_HOST"].removeprefix("unix://")}
    deployment = {"env": env, "secrets": secrets, "url": f"https://localhost:{https}", "ca": str(ca), "idp": idp,
                  "sessions": {}}
    try:
        yield deployment
    finally:
        for service, c in project_containers(dclient).items():  # kept for a failure's post-mortem
            (work / f"{service}.log").write_bytes(dclient.logs(c["Id"], tail=400))
        remove_user_artifacts(dclient, (*USERS, GPU_USER, BROWSER_USER))  # cleanup_servers = False leaves them
        compose(env, "down", "-v", "--remove-orphans", check=False)
        for net in dclient.networks(filters={"label": "hardened-spawner.network=per-user"}):
            if (net.get("Labels") or {}).get("hardened-spawner.owner") in (*USERS, GPU_USER, BROWSER_USER):
                dclient.remove_network(net["Id"])
        idp.stop()


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
    compose(deployment["env"], "up", "-d")
    assert set(project_containers(dclient)) == {"secrets", "db", "hub", "nginx"}
    for user, profile in zip(USERS, ("gpu-1", "cpu")):  # Alice holds the one GPU
        deployment["sessions"][user] = browser_login(deployment, user)
        r = start(deployment, user, profile)
        assert r.status_code == 200, r.text[-2000:]
    for user in USERS:
        wait_for_server(deployment, user)
    return deployment


def browser_login(deployment, user):
    session = requests.Session()
    session.verify = deployment["ca"]
    session.trust_env = False  # else REQUESTS_CA_BUNDLE replaces the test CA
    session, r = login(type("Site", (), {"url": deployment["url"]}), user, session)
    assert r.status_code == 302 and "/hub/" in r.headers["location"], r.text[-2000:]
    return session


def start(deployment, user, profile):
    """Start ``user``'s server from the spawn page, as a browser does; the page the hub answers."""
    session = deployment["sessions"][user]
    r = session.get(f"{deployment['url']}/hub/spawn", timeout=60)  # starts at once with one profile
    if 'name="profile"' in r.text:  # the options form
        r = session.post(f"{deployment['url']}/hub/spawn", timeout=60,
                         data={"profile": profile, "_xsrf": hub_xsrf(session)})
    return r


def hub_xsrf(session):
    """The hub's XSRF cookie (a user's server sets one of its own, on its own path)."""
    (value,) = [c.value for c in session.cookies if c.name == "_xsrf" and c.path.startswith("/hub")]
    return value


def api(deployment, user, method, path, **kwargs):
    session = deployment["sessions"][user]
    return session.request(method, f"{deployment['url']}/hub/api{path}", timeout=60,
                           headers={"X-XSRFToken": hub_xsrf(session)}, **kwargs)


def progress(deployment, user, timeout=180):
    """The spawn's progress events, read from the hub's event stream until it ends."""
    session = deployment["sessions"][user]
    events = []
    with session.get(f"{deployment['url']}/hub/api/users/{user}/server/progress", stream=True, timeout=timeout) as r:
        for line in r.iter_lines():
            if line.startswith(b"data:"):
                events.append(json.loads(line[5:]))
                if events[-1].get("ready") or events[-1].get("failed"):
                    break
    return events


def hub_audit(dclient):
    hub = project_containers(dclient)["hub"]["Id"]
    exec_id = dclient.exec_create(hub, ["cat", "/srv/jupyterhub/audit.log"])
    return [json.loads(line) for line in dclient.exec_start(exec_id).decode().splitlines() if line.strip()]


def gpus_of(dclient, container):
    requests_ = dclient.inspect_container(container)["HostConfig"]["DeviceRequests"] or []
    return [g for r in requests_ for g in (r.get("DeviceIDs") or [])]


def wait_for_server(deployment, user, timeout=240):
    session = deployment["sessions"][user]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = session.get(f"{deployment['url']}/user/{user}/api/status", timeout=30)
        if r.status_code == 200 and "started" in r.json():
            return r
        if r.status_code == 403:  # running, the browser has no cookie of the server yet: its OAuth round trip
            session.get(f"{deployment['url']}/user/{user}/lab", timeout=60)
            continue
        time.sleep(2)
    raise AssertionError(f"{user}'s server did not answer through nginx: {r.status_code} {r.text[-500:]}")


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
        page.wait_for_url(re.compile(rf"/user/{BROWSER_USER}/"), timeout=240_000)  # one profile: it spawns at once
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
