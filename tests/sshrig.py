"""Helpers for the SSH integration tests: real OpenSSH keys and clients, a hub per module.

The client configuration is the one docs/ssh-users.md gives users: the
gateway as a host of its own (its persistent host key pinned in
known_hosts), every other name reached through it with ProxyJump, host keys
checked strictly on both hops (the servers' with the hub CA's one
``@cert-authority`` line).
"""

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from urllib.parse import quote

import requests

from dockerspawner import DockerSpawner
from hubrig import Hub, remove_user_artifacts

LABEL = "hardened-spawner.owner"


def keygen(directory, name, key_type="ed25519", bits=None):
    """A real OpenSSH key pair; returns (private key path, public key line)."""
    path = Path(directory) / name
    args = ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", f"{name}@test", "-f", str(path)]
    if bits:
        args += ["-b", str(bits)]
    subprocess.run(args, check=True)
    return path, path.with_suffix(".pub").read_text().strip()


def write_keys(root, user, lines):
    """Put ``lines`` into the file key store, as an admin's tooling would."""
    directory = Path(root) / user
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = directory / "authorized_keys"
    path.write_text("".join(line + "\n" for line in lines))
    path.chmod(0o644)


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def public_key(key_file):
    return subprocess.run(["ssh-keygen", "-y", "-f", str(key_file)], check=True,
                          capture_output=True, text=True).stdout.strip()


def run_ssh(argv, input=None, timeout=60):
    """Run an OpenSSH client as a shell does: wait for the client itself, not for its pipes.

    With ProxyJump, ``ssh`` starts ``ssh -W`` as a child that shares its stderr. Under the full
    suite's load that child has outlived the finished client (stdout closed, exit status known)
    and kept the stderr pipe open for minutes, so ``subprocess.run(capture_output=True)`` waited
    for it and timed out although the session had ended. Output goes to files instead, so only
    the client's own exit is waited for; a client that really hangs still times out."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=out, stderr=err, text=True)
        try:
            if input is not None:
                proc.stdin.write(input)
                proc.stdin.close()
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            out.seek(0), err.seek(0)
            raise subprocess.TimeoutExpired(argv, timeout, output=out.read(), stderr=err.read()) from None
        out.seek(0), err.seek(0)
        return subprocess.CompletedProcess(argv, proc.returncode, out.read(), err.read())


def gateway_known_hosts(hub, path, user=None):
    """known_hosts pinning the gateway's persistent host key, read from the hub's state; with ``user``,
    also the one ``@cert-authority`` line the home page gives them for their servers' host keys."""
    lines = [f"[127.0.0.1]:{hub.env['HS_SSH_GATEWAY_PORT']} {public_key(hub.state / 'ssh_gateway_host_ed25519_key')}"]
    if user is not None and (hub.state / "ssh_host_ca_ed25519_key").exists():  # made at the first spawn
        lines.append(f"@cert-authority {user},{user}.* {public_key(hub.state / 'ssh_host_ca_ed25519_key')}")
    Path(path).write_text("".join(line + "\n" for line in lines))
    return path


class Client:
    """``ssh``/``sftp`` as one hub user with one key, configured as the user docs say."""

    def __init__(self, hub, user, key, workdir, timeout=60):
        self.hub, self.user, self.key, self.timeout = hub, user, key, timeout
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.known_hosts = gateway_known_hosts(hub, workdir / f"known_hosts_{user}", user)
        self.config = workdir / f"ssh_config_{user}_{Path(key).name}"
        self.config.write_text(f"""\
Host gateway
    HostName 127.0.0.1
    Port {hub.env['HS_SSH_GATEWAY_PORT']}
    User {user}
Host * !gateway
    User jovyan
    ProxyJump gateway
Host *
    UserKnownHostsFile {self.known_hosts}
    StrictHostKeyChecking yes
    IdentityFile {key}
    IdentitiesOnly yes
    BatchMode yes
    ConnectTimeout 15
    LogLevel INFO
""")

    def ssh(self, *args, input=None, timeout=None):
        gateway_known_hosts(self.hub, self.known_hosts, self.user)  # the CA's line once the hub made it
        return run_ssh(["ssh", "-F", str(self.config), *args], input=input, timeout=timeout or self.timeout)

    def sftp(self, target, batch):
        gateway_known_hosts(self.hub, self.known_hosts, self.user)
        return run_ssh(["sftp", "-F", str(self.config), "-b", "-", target], input=batch, timeout=self.timeout)


def wait_for_sshd(client, target, timeout=30, attempt=20):
    """The first ``ssh target true`` that works (the container's sshd may start just after the
    notebook server reports ready), or the last failure after ``timeout`` seconds.

    An attempt that hangs for ``attempt`` seconds counts as a failure and is said on stderr."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = client.ssh(target, "true", timeout=attempt)
        except subprocess.TimeoutExpired as e:
            print(f"wait_for_sshd: ssh {target} true hung for {attempt} s: {e.stderr!r}", file=sys.stderr)
            r = subprocess.CompletedProcess(e.cmd, 255, "", f"hung for {attempt} s")
        if r.returncode == 0 or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


def containers_of(dclient, user):
    return dclient.containers(all=True, filters={"label": f"{LABEL}={user}"})


def container_ip(dclient, user):
    (container,) = containers_of(dclient, user)
    return dclient.inspect_container(container["Id"])["NetworkSettings"]["Networks"]["hardened-spawner"]["IPAddress"]


def audit_events(hub, event):
    return [e for e in hub.audit() if e["event"] == event]


def awaited_events(hub, event, count=1, timeout=15):
    """The hub's audit records of ``event`` once there are at least ``count`` of them, or what there is
    after ``timeout`` seconds: the gateway posts its records to the hub after it answers the client."""
    deadline = time.monotonic() + timeout
    while len(events := audit_events(hub, event)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return events


@contextlib.contextmanager
def module_hub(directory, dclient, extra="", env=None):
    """A hub for a whole test module; removes its users' containers and SSH key volumes after."""
    # a shared, loaded test machine can take minutes to start a notebook server
    slow = "c.HardenedDockerSpawner.http_timeout = 300\nc.HardenedDockerSpawner.start_timeout = 360\n"
    hub = Hub(directory, slow + extra, env)
    try:
        hub.start()
        wait_port(int(hub.env["HS_SSH_GATEWAY_PORT"]))
        yield hub
    finally:
        hub.stop()
        remove_user_artifacts(dclient, hub.users)
        for user in hub.users:
            helpers = dclient.containers(all=True, filters={"label": f"hardened-spawner.ssh-keys-helper={user}"})
            for c in helpers:
                dclient.remove_container(c["Id"], force=True)
            keys_volume = f"jupyter-{DockerSpawner._escape(user)}-ssh-keys"
            for volume in (dclient.volumes(filters={"name": keys_volume}) or {}).get("Volumes") or []:
                if volume["Name"] == keys_volume:
                    dclient.remove_volume(volume["Name"], force=True)


def service_session(hub, user, prefix="/services/ssh-keys/"):
    """A browser-like session of ``user`` (DummyAuthenticator), logged in to the hub and the keys service."""
    session = requests.Session()
    session.get(f"{hub.url}/hub/login", timeout=30)
    r = session.post(f"{hub.url}/hub/login", timeout=30, data={
        "username": user, "password": "test-password", "_xsrf": session.cookies.get("_xsrf")})
    assert r.status_code == 200, r.text
    r = session.get(f"{hub.url}{prefix}", timeout=60)  # OAuth: hub -> authorize -> callback -> page
    assert r.status_code == 200 and "SSH keys" in r.text, r.text[-2000:]
    return session


def keys_api(hub, method, user, fingerprint="", prefix="/services/ssh-keys/", **kwargs):
    """Call the keys service's REST API as the hub's admin test service."""
    path = f"{hub.url}{prefix}api/users/{user}/keys" + (f"/{quote(fingerprint, safe='')}" if fingerprint else "")
    return requests.request(method, path, headers={"Authorization": f"token {hub.token}"}, timeout=60, **kwargs)


def keys_file_in(dclient, container_id, login="jovyan"):
    """The keys file of a running container, read through Docker (as root, from outside)."""
    from hardened_spawner.keys.delivery import file_from_archive

    stream, _ = dclient.get_archive(container_id, f"/etc/ssh/authorized_keys/{login}")
    return file_from_archive(b"".join(stream)).decode()


def dump(obj):
    return json.dumps(obj, sort_keys=True, default=str)


def spawn_progress(hub, user):
    """Spawn and follow the progress stream; returns the messages."""
    return [e.get("message", "") for e in hub.spawn_and_wait(user)]


def assert_no_key_material(text, public_lines):
    for line in public_lines:
        blob = line.split()[1]
        assert blob[20:80] not in text, "key material leaked"

