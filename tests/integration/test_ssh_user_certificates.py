"""ssh_user_certificates end to end: the keys service issues a user certificate for a registered key,
the real OpenSSH client uses it through the gateway, the container's sshd accepts only certificates
from the hub's CA for that server's name, within their validity.

One real hub (with its gateway and keys service) for the module; the client is configured as
docs/ssh-users.md says, with the certificate saved next to the private key.
"""

import re
import shutil
import subprocess
import time

import pytest
import requests
from sshrig import Client, audit_events, containers_of, keygen, module_hub, wait_for_sshd, write_keys

pytestmark = [pytest.mark.docker, pytest.mark.hub]

ALICE, MALLORY = "ucert-alice", "ucert-mallory"
HOURS = 2
PREFIX = "/services/ssh-keys/"


@pytest.fixture(scope="module")
def rig(tmp_path_factory, dclient, image):
    work = tmp_path_factory.mktemp("ssh-user-certs")
    keys = {name: keygen(work, name) for name in ("alice", "mallory")}
    extra = (f"c.HardenedDockerSpawner.ssh_user_certificates = True\n"
             f"c.HardenedDockerSpawner.ssh_user_certificate_hours = {HOURS}\n"
             f"c.Authenticator.blocked_users = {{{MALLORY!r}}}\n")
    with module_hub(work / "hub", dclient, extra) as hub:
        write_keys(hub.state / "ssh-keys", ALICE, [keys["alice"][1]])
        write_keys(hub.state / "ssh-keys", MALLORY, [keys["mallory"][1]])
        hub.ensure_user(MALLORY)
        progress = [e.get("message", "") for e in hub.spawn_and_wait(ALICE)]
        assert hub.server(ALICE)["ready"], progress
        yield {"hub": hub, "keys": keys, "work": work, "progress": progress}


def certificate(hub, user, **params):
    return requests.get(f"{hub.url}{PREFIX}api/users/{user}/certificate", params=params,
                        headers={"Authorization": f"token {hub.token}"}, timeout=60)


def client_with(rig, name, cert_text=None):
    """A client whose key (alice's) has ``cert_text`` beside it as ``<key>-cert.pub`` (none: no certificate)."""
    directory = rig["work"] / name
    directory.mkdir()
    key = directory / "id_ed25519"
    shutil.copy(rig["keys"]["alice"][0], key)
    key.chmod(0o600)
    if cert_text is not None:
        (directory / "id_ed25519-cert.pub").write_text(cert_text)
    return Client(rig["hub"], ALICE, key, directory)


def ca_signed(rig, name, principal, validity):
    """A certificate for alice's key made with the hub's CA by OpenSSH's ssh-keygen, with ``-V validity``."""
    directory = rig["work"] / f"signed-{name}"
    directory.mkdir()
    public = directory / "id_ed25519.pub"
    public.write_text(rig["keys"]["alice"][1] + "\n")
    subprocess.run(["ssh-keygen", "-q", "-s", str(rig["hub"].state / "ssh_host_ca_ed25519_key"), "-I", f"test {name}",
                    "-n", principal, "-V", validity, str(public)], check=True)
    return (directory / "id_ed25519-cert.pub").read_text()


def container_log(dclient):
    (container,) = containers_of(dclient, ALICE)
    return dclient.logs(container["Id"]).decode(errors="replace")


def test_a_login_with_the_issued_certificate_works_and_sshd_logs_the_key_id(rig, dclient):
    r = certificate(rig["hub"], ALICE)
    assert r.status_code == 200, r.text
    assert r.text.startswith("ssh-ed25519-cert-v01@openssh.com ")
    client = client_with(rig, "issued", r.text)
    r = wait_for_sshd(client, ALICE)
    assert r.returncode == 0, r.stderr
    r = client.ssh(ALICE, "id -un; cat /etc/ssh/authorized_keys/jovyan")
    assert r.returncode == 0, r.stderr
    login, *keys_file = r.stdout.splitlines()
    assert login == "jovyan"
    assert keys_file and all(line.startswith(f'cert-authority,principals="{ALICE}",restrict,') for line in keys_file)
    assert rig["keys"]["alice"][1].split()[1] not in r.stdout  # no standing user key in the container
    (issued,) = [e for e in audit_events(rig["hub"], "ssh.certificate") if e["decision"] == "issued"][:1]
    assert issued["key_id"] == f"user={ALICE} server=(default)" and issued["principals"] == [ALICE]
    accepted = [line for line in container_log(dclient).splitlines() if "Accepted publickey" in line]
    assert any(f"ID user={ALICE} server=(default) (serial {issued['serial']})" in line for line in accepted), accepted


def test_the_registered_key_without_a_certificate_is_refused_by_the_container(rig):
    client = client_with(rig, "plain")
    r = client.ssh("gateway", "true")  # the gateway itself still authenticates the registered key
    assert "Permission denied" not in r.stderr, r.stderr
    r = client.ssh(ALICE, "true")
    assert r.returncode == 255 and "jovyan@" in r.stderr and "Permission denied (publickey)" in r.stderr, r.stderr


@pytest.mark.parametrize("name,validity", [("expired", "-2h:-1h"), ("not-yet-valid", "+1h:+2h")])
def test_an_expired_or_not_yet_valid_certificate_is_refused(rig, name, validity):
    client = client_with(rig, name, ca_signed(rig, name, ALICE, validity))
    r = client.ssh(ALICE, "true")
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr, r.stderr
    good = client_with(rig, f"{name}-control", ca_signed(rig, f"{name}-control", ALICE, "-5m:+1h"))
    assert good.ssh(ALICE, "true").returncode == 0  # the same CA, in its validity: accepted


@pytest.mark.parametrize("name,principal", [("other-server", f"{ALICE}.other"), ("container-user", "jovyan")])
def test_a_certificate_for_another_server_or_for_the_container_account_does_not_open_this_one(rig, name, principal):
    """Every user's container logs in as jovyan: a certificate naming the account would open anyone's."""
    client = client_with(rig, name, ca_signed(rig, name, principal, "-5m:+1h"))
    r = client.ssh(ALICE, "true")
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr, r.stderr


def test_the_lifetime_is_capped_at_the_configured_hours(rig):
    before = time.time()
    r = certificate(rig["hub"], ALICE, hours="100")
    assert r.status_code == 200, r.text
    valid_before = int(r.headers["X-SSH-Certificate-Valid-Before"])
    assert before + HOURS * 3600 - 5 <= valid_before <= time.time() + HOURS * 3600
    path = rig["work"] / "capped-cert.pub"
    path.write_text(r.text)
    shown = subprocess.run(["ssh-keygen", "-L", "-f", str(path)], capture_output=True, text=True, check=True).stdout
    start, end = re.search(r"Valid: from (\S+) to (\S+)", shown).groups()
    assert (time.mktime(time.strptime(end, "%Y-%m-%dT%H:%M:%S"))
            - time.mktime(time.strptime(start, "%Y-%m-%dT%H:%M:%S"))) == HOURS * 3600 + 60
    assert certificate(rig["hub"], ALICE, hours="0").status_code == 400


def test_a_withdrawn_user_gets_no_certificate(rig):
    r = certificate(rig["hub"], MALLORY)
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (f"No SSH certificate for {MALLORY}: blocked by the hub admin. "
                                   "Ask the hub admin if you think this is wrong.")
    refused = [e for e in audit_events(rig["hub"], "ssh.certificate") if e["user"] == MALLORY]
    assert refused and refused[-1]["decision"] == "refused"


def test_the_keys_page_offers_the_certificate_download(rig):
    from sshrig import service_session

    session = service_session(rig["hub"], ALICE, PREFIX)
    page = session.get(f"{rig['hub'].url}{PREFIX}", timeout=60).text
    link = re.search(r'class="btn btn-sm btn-outline-primary hs-key-certificate" download="id-cert.pub"\s+'
                     r'href="([^"]+)"', page)
    assert link and "curl -fsS -H" in page, page[-3000:]
    r = session.get(rig["hub"].url + link.group(1).replace("&amp;", "&"), timeout=60)
    assert r.status_code == 200 and r.text.startswith("ssh-ed25519-cert-v01@openssh.com "), r.text


def test_a_key_added_while_the_server_runs_does_not_reach_the_containers_keys_file(rig, dclient):
    from sshrig import keys_api, keys_file_in

    _, public = keygen(rig["work"], "added-later")
    r = keys_api(rig["hub"], "POST", ALICE, json={"key": public})
    assert r.status_code == 201, r.text
    assert r.json()["delivered"] == []  # nothing rewritten: the container trusts the CA only
    (container,) = containers_of(dclient, ALICE)
    text = keys_file_in(dclient, container["Id"])
    assert public.split()[1] not in text and text.startswith('cert-authority,principals="ucert-alice",')
