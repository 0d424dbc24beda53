"""The production deployment (deploy/) brought up on the rig's daemon, for tests/integration/test_deployment.py
and benchmarks/deployment_soak.py.

deploy/build.sh builds the hub image from the wheel, PostgreSQL and nginx on the debootstrap base;
docker-compose (Debian's 1.29) runs deploy/docker-compose.yml with secrets made here (root-owned,
0600), a TLS certificate from a CA made here, and the demo IdP on the docker0 address (where the
hub container reaches it). Users log in at the IdP and use the hub through nginx over TLS, as browsers do.
"""

import contextlib
import datetime
import json
import os
import subprocess
import time

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hubrig import IMAGE, REPO, free_port, remove_user_artifacts
from oidcrig import IdP, login

from hardened_spawner.spawner.networks import bridge_gateway

PROJECT = "hsdeploytest"
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


@contextlib.contextmanager
def deployed(work, dclient, users, gpu_ids="0"):
    """deploy/ built, its secrets, TLS and IdP made (``users``: name -> IdP groups), not yet up;
    yields the deployment's settings. After: every user's server and home, and the project, removed."""
    subprocess.run(["bash", str(REPO / "deploy" / "build.sh")], check=True, timeout=1800)
    ca = make_tls(work)
    secrets = work / "secrets"
    (secrets / "hub").mkdir(parents=True)
    (secrets / "hub" / "oidc_client_secret").write_text("demo-secret\n")  # the demo IdP takes any
    subprocess.run(["bash", str(REPO / "deploy" / "make-secrets.sh")], env={**os.environ, "SECRETS_DIR": str(secrets)},
                   check=True, capture_output=True)
    idp = IdP(work / "idp.log", host=bridge_gateway(dclient)).start()
    for user, groups in users.items():
        idp.set_user(user, groups)
    https = free_port()
    env = {**os.environ, "HS_PUBLIC_URL": f"https://localhost:{https}", "HS_OIDC_ISSUER": idp.issuer,
           "HS_OIDC_CLIENT_ID": "hardened-spawner-deploy-test", "HS_SINGLEUSER_IMAGE": IMAGE, "HS_GPU_IDS": gpu_ids,
           "HTTPS_PORT": str(https), "HTTP_PORT": str(free_port()), "SSH_PORT": str(free_port()),
           "SECRETS_DIR": str(secrets), "DOCKER_SOCKET": os.environ["DOCKER_HOST"].removeprefix("unix://")}
    deployment = {"env": env, "secrets": secrets, "url": f"https://localhost:{https}", "ca": str(ca), "idp": idp,
                  "sessions": {}}
    try:
        yield deployment
    finally:
        for service, c in project_containers(dclient).items():  # kept for a failure's post-mortem
            (work / f"{service}.log").write_bytes(dclient.logs(c["Id"], tail=400))
        remove_user_artifacts(dclient, users)  # cleanup_servers = False leaves them
        compose(env, "down", "-v", "--remove-orphans", check=False)
        for net in dclient.networks(filters={"label": "hardened-spawner.network=per-user"}):
            if (net.get("Labels") or {}).get("hardened-spawner.owner") in users:
                dclient.remove_network(net["Id"])
        idp.stop()


def up(deployment, timeout=120):
    """``docker-compose up -d``, then wait until nginx answers over TLS (compose returns once its
    container started; docker-proxy takes connections before nginx listens and closes them)."""
    compose(deployment["env"], "up", "-d")
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = requests.get(f"{deployment['url']}/hub/health", verify=deployment["ca"], timeout=10)
            if r.status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nginx did not answer https://.../hub/health within {timeout}s")
        time.sleep(1)


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
