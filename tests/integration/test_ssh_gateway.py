"""SSH end to end: file key store -> spawn -> gateway -> sshd in the container.

One real hub (with its managed SSH gateway) for the module; real OpenSSH
``ssh``/``sftp`` clients configured as docs/ssh-users.md says.
"""

import json
import subprocess
import time

import pytest
import requests
from hubrig import free_port
from sshrig import (
    Client, assert_no_key_material, audit_events, container_ip, containers_of, dump, gateway_known_hosts, keygen,
    module_hub, run_ssh, spawn_progress, wait_for_sshd, wait_port, write_keys,
)

from hardened_spawner.keys.validation import DEFAULT_FORCED_OPTIONS

pytestmark = [pytest.mark.docker, pytest.mark.hub]

ALICE, BOB = "ssh-alice", "ssh-bob"


@pytest.fixture(scope="module")
def rig(tmp_path_factory, dclient, image):
    work = tmp_path_factory.mktemp("ssh-gateway")
    keys = {name: keygen(work, name) for name in ("alice", "alice2", "mallory")}
    keys["bob"] = keygen(work, "bob", "rsa", 3072)  # RSA at the floor works end to end
    keys["rsa1024"] = keygen(work, "rsa1024", "rsa", 1024)
    keys["dsa"] = keygen(work, "dsa", "dsa")
    with module_hub(work / "hub", dclient) as hub:
        store = hub.state / "ssh-keys"
        write_keys(store, ALICE, [keys["alice"][1], keys["dsa"][1], keys["rsa1024"][1],
                                  'command="/bin/evil",permitopen="*:*" ' + keys["alice2"][1]])
        write_keys(store, BOB, [keys["bob"][1]])
        for user in (ALICE, BOB):  # both start at once; then follow each one's progress
            assert hub.spawn(user).status_code in (201, 202)
        progress = {user: [e.get("message", "") for e in hub.progress(user)] for user in (ALICE, BOB)}
        for user in (ALICE, BOB):
            assert hub.server(user)["ready"], progress[user]
        yield {
            "hub": hub, "keys": keys, "store": store, "progress": progress, "work": work,
            "alice": Client(hub, ALICE, keys["alice"][0], work),
            "bob": Client(hub, BOB, keys["bob"][0], work),
        }


def test_spawn_reports_rejected_keys_and_the_ssh_command(rig):
    port = rig["hub"].env["HS_SSH_GATEWAY_PORT"]
    messages = "\n".join(rig["progress"][ALICE])
    assert "SSH key rejected, line 2: DSA (ssh-dss) keys are not accepted" in messages
    assert "SSH key rejected, line 3: RSA key has 1024 bits; at least 3072 are required" in messages
    assert f"SSH keys delivered; connect with: ssh -J {ALICE}@127.0.0.1:{port} jovyan@{ALICE}" in messages
    (keys_event,) = [e for e in audit_events(rig["hub"], "ssh.keys") if e["user"] == ALICE]
    assert [k["line"] for k in keys_event["accepted"]] == [1, 4]
    assert [(r["line"], r["fingerprint"][:7]) for r in keys_event["rejected"]] == [(2, "SHA256:"), (3, "SHA256:")]


def test_alice_runs_a_command_in_her_container_as_uid_1000(rig):
    r = wait_for_sshd(rig["alice"], ALICE)
    assert r.returncode == 0, r.stderr
    r = rig["alice"].ssh(ALICE, "id -u; id -un; cat /etc/ssh/authorized_keys/jovyan; stat -c '%U %a' "
                               "/etc/ssh/authorized_keys/jovyan; hostname")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["1000", "jovyan"]
    delivered = lines[2:4]
    assert delivered == [f"{DEFAULT_FORCED_OPTIONS} {' '.join(rig['keys'][k][1].split()[:2])}"
                         for k in ("alice", "alice2")]
    assert lines[4] == "root 644"


def test_the_exact_command_the_hub_prints_works(rig):
    printed = [m for m in rig["progress"][ALICE] if "connect with: " in m][0].split("connect with: ")[1]
    argv = printed.split()
    assert argv[:2] == ["ssh", "-J"]
    known = gateway_known_hosts(rig["hub"], rig["work"] / "known_hosts_exact", ALICE)
    config = rig["work"] / "ssh_config_exact"
    config.write_text(f"""\
Host *
    IdentityFile {rig['keys']['alice'][0]}
    IdentitiesOnly yes
    BatchMode yes
    UserKnownHostsFile {known}
    StrictHostKeyChecking yes
""")
    r = run_ssh(["ssh", "-F", str(config), *argv[1:], "id -un"], timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "jovyan", r.stderr


def test_sftp_transfers_a_file_both_ways(rig):
    local = rig["work"] / "report.txt"
    local.write_text("kernel died at step 4242\n")
    back = rig["work"] / "report.back"
    r = rig["alice"].sftp(ALICE, f"put {local} /home/jovyan/report.txt\nget /home/jovyan/report.txt {back}\n")
    assert r.returncode == 0, r.stderr
    assert back.read_text() == local.read_text()
    assert rig["alice"].ssh(ALICE, "cat /home/jovyan/report.txt").stdout == local.read_text()


def test_root_login_is_refused(rig):
    r = rig["alice"].ssh(f"root@{ALICE}", "id")
    assert r.returncode == 255 and "Permission denied" in r.stderr


def test_password_login_is_refused_at_the_gateway_and_in_the_container(rig):
    no_keys = ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"]
    r = rig["alice"].ssh(*no_keys, "gateway", "true")
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr
    # the gateway lets the key through; the container's sshd then offers no password either
    r = rig["alice"].ssh("-o", "PreferredAuthentications=password,keyboard-interactive", ALICE, "true")
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr


def test_a_wrong_key_is_refused_and_audited(rig):
    mallory = Client(rig["hub"], ALICE, rig["keys"]["mallory"][0], rig["work"])
    before = len(audit_events(rig["hub"], "ssh.gateway.auth"))
    r = mallory.ssh(ALICE, "id")
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr
    # bob's key does not open alice's account either
    r = Client(rig["hub"], ALICE, rig["keys"]["bob"][0], rig["work"]).ssh(ALICE, "id")
    assert r.returncode == 255
    denied = [e for e in audit_events(rig["hub"], "ssh.gateway.auth")[before:] if e["decision"] == "deny"]
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(rig["keys"]["mallory"][0])], capture_output=True,
                                 text=True).stdout.split()[1]
    assert any(fingerprint in e["offered"] for e in denied)
    assert all(e["user"] == ALICE for e in denied)


def test_alice_cannot_reach_bobs_container(rig, dclient):
    r = rig["alice"].ssh(f"jovyan@{BOB}", "id")
    assert r.returncode == 255 and "administratively prohibited" in r.stderr
    assert f"'{BOB}' is not one of your servers" in r.stderr
    # nor by address: the gateway never dials what a client names
    bob_ip = container_ip(dclient, BOB)
    r = rig["alice"].ssh("-W", f"{bob_ip}:2222", "gateway")
    assert r.returncode == 255 and "administratively prohibited" in r.stderr
    r = rig["alice"].ssh("-W", "127.0.0.1:8081", "gateway")
    assert r.returncode == 255 and "administratively prohibited" in r.stderr
    denied = [e for e in audit_events(rig["hub"], "ssh.gateway.forward") if e["decision"] == "deny"]
    assert {e["target"] for e in denied} >= {f"{BOB}:22", f"{bob_ip}:2222", "127.0.0.1:8081"}
    # bob reaches his own
    r = wait_for_sshd(rig["bob"], BOB)
    assert r.returncode == 0, r.stderr


def test_local_forwarding_reaches_the_containers_own_loopback_only(rig, dclient):
    """What VS Code Remote-SSH needs (-L to a port inside the container), and nothing else."""
    client = rig["alice"]
    assert wait_for_sshd(client, ALICE).returncode == 0
    port = free_port()
    tunnel = subprocess.Popen(["ssh", "-F", str(client.config), "-N", "-o", "ExitOnForwardFailure=yes",
                               "-L", f"127.0.0.1:{port}:127.0.0.1:8888", ALICE],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port)
        answer = requests.get(f"http://127.0.0.1:{port}/user/{ALICE}/api", timeout=30)
        assert answer.status_code == 200 and "version" in answer.json()  # the notebook server, inside
    finally:
        tunnel.terminate()
        tunnel.wait(timeout=10)
    r = client.ssh("-W", "localhost:2222", ALICE, input="")  # the container's own sshd answers its banner
    assert r.returncode == 0 and r.stdout.startswith("SSH-2.0-OpenSSH"), r.stderr
    own = container_ip(dclient, ALICE)
    for where in (f"{own}:8888", f"{container_ip(dclient, BOB)}:2222", "127.0.0.2:8888"):
        r = client.ssh("-W", where, ALICE, input="")  # any other address: refused by sshd
        assert r.returncode == 255 and "administratively prohibited" in r.stderr, (where, r.stderr)
    r = client.ssh("-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22", ALICE, "true")
    assert r.returncode == 255 and "forwarding failed" in r.stderr  # no remote forwarding in the container
    r = client.ssh("-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22", "-N", "gateway")
    assert r.returncode == 255 and "remote port forwarding failed" in r.stderr  # nor at the gateway
    r = client.ssh("-X", "-o", "ForwardX11Trusted=yes", ALICE, "echo ${DISPLAY:-no-x11}")
    assert r.returncode == 0 and r.stdout.strip() == "no-x11", r.stderr


def test_an_ssh_session_sees_the_notebooks_environment_but_never_the_hub_token(rig, dclient):
    r = rig["alice"].ssh(ALICE, 'python -c "import sys; print(sys.prefix)"; env')
    assert r.returncode == 0, r.stderr
    prefix, *env = r.stdout.splitlines()
    assert prefix == "/opt/conda"  # the image's Python, as in the notebook
    (container,) = containers_of(dclient, ALICE)
    notebook = dict(line.split("=", 1) for line in dclient.inspect_container(container["Id"])["Config"]["Env"])
    session = dict(line.split("=", 1) for line in env if "=" in line)
    assert session["PATH"] == notebook["PATH"] and session["NVIDIA_VISIBLE_DEVICES"] == "void"  # no GPU leased
    assert not [name for name in session if name.startswith(("JUPYTERHUB_", "JPY_"))]
    assert notebook["JUPYTERHUB_API_TOKEN"] not in r.stdout


def test_strict_host_checking_with_only_the_cert_authority_line(rig, dclient):
    client = rig["alice"]
    lines = client.known_hosts.read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"@cert-authority {ALICE},{ALICE}.* ssh-ed25519 ")
    r = client.ssh("-v", ALICE, "true")
    assert r.returncode == 0, r.stderr
    assert "Server host certificate: ssh-ed25519-cert-v01@openssh.com" in r.stderr
    assert "matches the ED25519-CERT host certificate" in r.stderr
    spawned = [e for e in audit_events(rig["hub"], "spawn") if e["user"] == ALICE][-1]
    assert spawned["ssh_host_key"] in r.stderr  # the key the hub made and certified for this start
    without_ca = rig["work"] / "known_hosts_gateway_only"
    without_ca.write_text(lines[0] + "\n")
    r = client.ssh("-o", f"UserKnownHostsFile={without_ca}", ALICE, "true")
    assert r.returncode == 255 and "Host key verification failed" in r.stderr
    (container,) = containers_of(dclient, ALICE)
    exec_id = dclient.exec_create(container["Id"], ["sh", "-c", "ls -A /tmp; ls -ln /etc/ssh/authorized_keys/.host"])
    listing = dclient.exec_start(exec_id).decode()
    assert "hs-sshd" not in listing  # the container made no host key of its own
    assert " 1000 100 " in [line for line in listing.splitlines() if line.endswith("ssh_host_ed25519_key")][0]


def test_the_gateway_has_no_shell_commands_or_sftp(rig):
    for args in (["-tt", "gateway"], ["gateway", "id"]):
        r = rig["alice"].ssh(*args)
        assert r.returncode == 255 and "this gateway has no shell, commands or sftp" in r.stderr, r
    r = rig["alice"].sftp("gateway", "ls\n")
    assert r.returncode != 0
    assert any(e["decision"] == "deny" for e in audit_events(rig["hub"], "ssh.gateway.session"))


def test_one_audit_line_per_authentication_and_per_forward(rig, dclient):
    hub = rig["hub"]
    auths, forwards = len(audit_events(hub, "ssh.gateway.auth")), len(audit_events(hub, "ssh.gateway.forward"))
    r = rig["alice"].ssh(ALICE, "true")
    assert r.returncode == 0, r.stderr
    new_auths = audit_events(hub, "ssh.gateway.auth")[auths:]
    new_forwards = audit_events(hub, "ssh.gateway.forward")[forwards:]
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(rig["keys"]["alice"][0])], capture_output=True,
                                 text=True).stdout.split()[1]
    assert [(e["user"], e["decision"], e["fingerprint"]) for e in new_auths] == [(ALICE, "accept", fingerprint)]
    assert [(e["user"], e["decision"], e["target"], e["server"]) for e in new_forwards] == [
        (ALICE, "allow", f"{ALICE}:22", "")]
    assert new_forwards[0]["address"] == f"{container_ip(dclient, ALICE)}:2222"  # the daemon's bridge address


def test_container_sshd_has_no_failing_algorithm_in_ssh_audit_and_only_a_host_certificate(rig, dclient):
    assert wait_for_sshd(rig["alice"], ALICE).returncode == 0
    r = subprocess.run(["ssh-audit", "-j", "--skip-rate-test", "-p", "2222", container_ip(dclient, ALICE)],
                       capture_output=True, text=True, timeout=60)
    report = json.loads(r.stdout)
    failures = [(kind, alg["algorithm"]) for kind in ("kex", "key", "enc", "mac")
                for alg in report.get(kind) or [] if (alg.get("notes") or {}).get("fail")]
    assert failures == [] and r.returncode in (0, 2), r.stdout
    assert [k["algorithm"] for k in report["key"]] == ["ssh-ed25519-cert-v01@openssh.com"]  # no RSA, no plain key


def test_gateway_has_no_failing_algorithm_in_ssh_audit(rig):
    port = rig["hub"].env["HS_SSH_GATEWAY_PORT"]
    r = subprocess.run(["ssh-audit", "-j", "--skip-rate-test", "-p", port, "127.0.0.1"],
                       capture_output=True, text=True, timeout=60)
    report = json.loads(r.stdout)
    failures = [(kind, alg["algorithm"]) for kind in ("kex", "key", "enc", "mac")
                for alg in report.get(kind) or [] if (alg.get("notes") or {}).get("fail")]
    assert failures == [] and r.returncode in (0, 2), r.stdout  # 2: warnings (non-post-quantum kex); 3: failures
    assert [k["algorithm"] for k in report["key"]] == ["ssh-ed25519"]


def test_home_page_shows_the_ssh_command(rig):
    hub = rig["hub"]
    session = requests.Session()
    session.get(f"{hub.url}/hub/login", timeout=30)
    r = session.post(f"{hub.url}/hub/login", timeout=30, data={
        "username": ALICE, "password": "test-password", "_xsrf": session.cookies.get("_xsrf")})
    assert r.status_code == 200, r.text
    page = session.get(f"{hub.url}/hub/home", timeout=30).text
    port = hub.env["HS_SSH_GATEWAY_PORT"]
    assert f'<code id="hs-ssh-command">ssh -J {ALICE}@127.0.0.1:{port} jovyan@{ALICE}</code>' in page
    ca = (hub.state / "ssh_host_ca_ed25519_key.pub").read_text().split()[:2]
    assert f'<code id="hs-ssh-host-ca">@cert-authority {ALICE},{ALICE}.* {" ".join(ca)}</code>' in page
    assert "StrictHostKeyChecking yes" in page and "StrictHostKeyChecking no" not in page


def test_no_key_material_in_docker_env_labels_logs_or_audit(rig, dclient):
    publics = [rig["keys"][k][1] for k in ("alice", "alice2", "bob", "dsa", "rsa1024")]
    for user in (ALICE, BOB):
        (container,) = containers_of(dclient, user)
        info = dclient.inspect_container(container["Id"])
        assert_no_key_material(dump(info), publics)  # env, labels, command, mounts, everything
    assert_no_key_material(rig["hub"].log(), publics)
    assert_no_key_material((rig["hub"].state / "audit.log").read_text(), publics)
    assert_no_key_material(dump(rig["hub"].api("GET", f"/users/{ALICE}").json()), publics)


def test_if_sshd_dies_the_notebook_keeps_running_and_the_log_says_so(rig, dclient):
    (container,) = containers_of(dclient, BOB)
    exec_id = dclient.exec_create(container["Id"], ["sh", "-c", "kill $(pgrep -f 'sshd -D')"])
    dclient.exec_start(exec_id)
    deadline = time.monotonic() + 10
    while b"sshd exited" not in dclient.logs(container["Id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    logs = dclient.logs(container["Id"]).decode()
    assert "hs-entrypoint: sshd exited with status" in logs
    assert "the notebook server keeps running" in logs
    assert rig["hub"].user_get(BOB, "/api/status").status_code == 200
    assert dclient.inspect_container(container["Id"])["State"]["Running"]
    r = rig["bob"].ssh(BOB, "true")
    assert r.returncode == 255


ROGUE_SSHD = """set -e
echo $$ > /tmp/rogue.pid
umask 077
rm -rf /tmp/rogue && mkdir /tmp/rogue && cd /tmp/rogue
ssh-keygen -q -t ed25519 -N '' -f host
if [ "$1" = other-ca ]; then
    ssh-keygen -q -t ed25519 -N '' -f ca
    ssh-keygen -q -s ca -h -I rogue -n "$2" host.pub
    cert="-o HostCertificate=/tmp/rogue/host-cert.pub"
fi
exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config -h /tmp/rogue/host $cert -o HostKeyAlgorithms=ssh-ed25519-cert-v01@openssh.com,ssh-ed25519
"""


@pytest.mark.parametrize("rogue", ["uncertified", "other-ca"])
def test_a_server_whose_host_key_is_not_certified_is_refused_by_ssh_and_the_gateway(rig, dclient, rogue):
    """Bob's sshd is gone (test above); something else answers on his server's address and port:
    a host key of its own, or one certified for his name by another CA."""
    (container,) = containers_of(dclient, BOB)
    exec_id = dclient.exec_create(container["Id"], ["sh", "-c", "[ ! -f /tmp/rogue.pid ] || kill $(cat /tmp/rogue.pid) || true"])
    dclient.exec_start(exec_id)
    exec_id = dclient.exec_create(container["Id"], ["sh", "-c", ROGUE_SSHD, "rogue", rogue, BOB])
    dclient.exec_start(exec_id, detach=True)
    client = rig["bob"]
    direct = ["-o", "ProxyJump=none", "-o", f"HostKeyAlias={BOB}", "-p", "2222", f"jovyan@{container_ip(dclient, BOB)}"]
    deadline = time.monotonic() + 30
    while True:  # reached around the gateway, strict with only the @cert-authority line: ssh refuses it
        r = client.ssh(*direct, "true")
        if "Host key verification failed" in r.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.returncode == 255 and "Host key verification failed" in r.stderr, r.stderr
    denied = len([e for e in audit_events(rig["hub"], "ssh.gateway.forward") if e["decision"] == "deny"])
    for strict in ("yes", "no"):  # through the gateway, whatever the client checks: nothing is forwarded
        r = client.ssh("-o", f"StrictHostKeyChecking={strict}", "-o", "UserKnownHostsFile=/dev/null", BOB, "true")
        assert r.returncode == 255 and "administratively prohibited" in r.stderr, r.stderr
    reason = "Host key is not trusted" if rogue == "uncertified" else "Host CA key is not trusted"
    assert f"{BOB} was not verified: it has no host certificate for '{BOB}'" in r.stderr and reason in r.stderr
    refusals = [e for e in audit_events(rig["hub"], "ssh.gateway.forward") if e["decision"] == "deny"][denied:]
    assert len(refusals) == 2 and reason in refusals[-1]["reason"]


def test_a_key_removed_from_the_store_is_refused_at_the_gateway_at_once(rig):
    keys = rig["keys"]
    assert rig["alice"].ssh(ALICE, "true").returncode == 0
    write_keys(rig["store"], ALICE, [keys["alice2"][1]])  # alice's first key is revoked
    r = rig["alice"].ssh(ALICE, "true")
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr
    # the container still has it until its next start, but nothing reaches the container
    # without the gateway; the remaining key still works
    alice2 = Client(rig["hub"], ALICE, keys["alice2"][0], rig["work"])
    r = alice2.ssh(ALICE, "true")
    assert r.returncode == 0, r.stderr
    denied = [e for e in audit_events(rig["hub"], "ssh.gateway.auth") if e["decision"] == "deny"]
    assert denied[-1]["reason"] == "none of the offered keys is in the key store"


def test_a_key_removed_from_the_store_is_gone_from_the_container_at_the_next_start(rig):
    hub, keys = rig["hub"], rig["keys"]
    hub.stop_server(ALICE)
    spawn_progress(hub, ALICE)
    alice2 = Client(hub, ALICE, keys["alice2"][0], rig["work"])
    r = wait_for_sshd(alice2, ALICE)
    assert r.returncode == 0, r.stderr
    delivered = alice2.ssh(ALICE, "cat /etc/ssh/authorized_keys/jovyan").stdout
    assert delivered == f"{DEFAULT_FORCED_OPTIONS} {' '.join(keys['alice2'][1].split()[:2])}\n"
