"""Start a real JupyterHub (and configurable-http-proxy) for one test module.

The hub loads the repository's jupyterhub_config.py, then the test's own
settings, on free ports and in its own state directory. An admin service
token drives the REST API.
"""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("HS_SINGLEUSER_IMAGE", "hardened-spawner/singleuser:local")


def remove_user_artifacts(dclient, users):
    """Remove what tests left for ``users`` on the daemon: containers and home volumes."""
    import docker

    for user in users:
        for c in dclient.containers(all=True, filters={"label": f"hardened-spawner.owner={user}"}):
            dclient.remove_container(c["Id"], force=True, v=True)
        escaped = user.replace("-", "-2d")
        # the shipped config's named home volume (jupyterhub-user-<escaped name>), and a read-only root's
        # per-server volumes that a server kept with remove=False still has (its keys, its conda/pip policy)
        own = re.compile(rf"^jupyter-{re.escape(escaped)}(--.+)?-(ssh-keys|conda-policy)$")
        names = [v["Name"] for v in dclient.volumes(filters={"name": f"jupyter-{escaped}"})["Volumes"] or ()]
        for volume in ["jupyterhub-user-" + escaped] + [n for n in names if own.match(n)]:
            try:
                dclient.remove_volume(volume)
            except docker.errors.APIError as e:
                if e.status_code not in (404, 409):  # absent, or a container still being removed uses it
                    raise


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(state, extra):
    token = secrets.token_hex(16)
    config = state / "jupyterhub_config.py"
    config.write_text(
        f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n"
        # appended: the shipped config's own services (the SSH gateway) keep running
        f"c.JupyterHub.services.append({{'name': 'tester', 'api_token': {token!r}}})\n"
        "c.JupyterHub.load_roles.append({'name': 'admin', 'services': ['tester']})\n"
        "c.JupyterHub.log_level = 'DEBUG'\n"
        # the spawn API answers 202 at once, so tests can follow the progress stream
        "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n"
        + extra
        + "\nfrom hardened_spawner.config_check import enforce_config\nenforce_config(c)\n"
    )
    return config, token


class Hub:
    """A running hub. ``api()`` calls its REST API as an admin service."""

    def __init__(self, state, extra="", env=None):
        self.state = Path(state)
        self.state.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config, self.token = write_config(self.state, extra)
        self.env = {
            **os.environ,
            "HS_HUB_STATE": str(self.state),
            "HS_BIND_URL": self.url,
            "HS_HUB_PORT": str(free_port()),
            "HS_PROXY_API_PORT": str(free_port()),
            "HS_SSH_GATEWAY_PORT": str(free_port()),
            "HS_SSH_KEYS_PORT": str(free_port()),
            "HS_DEMO_PASSWORD": "test-password",
            "HS_AUDIT_LOG": str(self.state / "audit.log"),
            **(env or {}),
        }
        self.log_path = self.state / "hub.log"
        self.command_prefix = []  # e.g. nsenter into a container's network namespace (test_swarm_isolation)
        self.proc = None
        self.users = set()

    def start(self, wait=True, timeout=60):
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.command_prefix, sys.executable, "-m", "jupyterhub", "-f", str(self.config)],
            cwd=self.state, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_up(timeout)
        return self

    def wait_up(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if requests.get(self.url + "/hub/api/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"hub did not come up in {timeout}s:\n{self.log()[-4000:]}")

    def wait_exit(self, timeout=60):
        return self.proc.wait(timeout)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def audit(self):
        path = self.state / "audit.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc:
            self.log_file.close()
        self._kill_orphan_proxy()

    def _kill_orphan_proxy(self):
        """A hub killed hard leaves its proxy (JupyterHub starts it in a session of its own)."""
        pid_file = self.state / "proxy.pid"
        try:
            pid = int(pid_file.read_text())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"configurable-http-proxy" not in f.read():
                    return
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            return  # no pid file, or the proxy is gone already

    def kill(self):
        """Kill the hub hard (and its proxy), as a crash would."""
        self.stop(sig=signal.SIGKILL, timeout=10)

    # ---- REST API ---------------------------------------------------------------
    def api(self, method, path, **kwargs):
        headers = {"Authorization": f"token {self.token}", **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 30)
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, **kwargs)

    def ensure_user(self, name, admin=False):
        self.users.add(name)
        r = self.api("GET", f"/users/{name}")
        if r.status_code == 404:
            r = self.api("POST", f"/users/{name}", json={"admin": admin})
            assert r.status_code == 201, r.text
        return r

    def spawn(self, name, options=None, server=""):
        """Request a spawn; returns the POST response (201/202 accepted, 4xx refused)."""
        self.ensure_user(name)
        path = f"/users/{name}/servers/{server}" if server else f"/users/{name}/server"
        return self.api("POST", path, json=options or {})

    def progress(self, name, server="", timeout=150):
        """Follow the progress event stream to its end; returns the list of events."""
        path = f"/users/{name}/servers/{server}/progress" if server else f"/users/{name}/server/progress"
        events = []
        # Right after a failure JupyterHub cleans up before it publishes the
        # failed spawn; the stream answers 400 "not starting" until then.
        for _ in range(50):
            r = self.api("GET", path, stream=True, timeout=timeout)
            if r.status_code != 400 or "not starting" not in r.text:
                break
            time.sleep(0.2)
        with r:
            assert r.status_code == 200, r.text
            for line in r.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    events.append(json.loads(line[5:]))
        return events

    def spawn_and_wait(self, name, options=None, server="", timeout=150):
        r = self.spawn(name, options, server)
        assert r.status_code in (201, 202), r.text
        return self.progress(name, server, timeout)

    def server(self, name, server=""):
        user = self.api("GET", f"/users/{name}").json()
        return user.get("servers", {}).get(server)

    def stop_server(self, name, server="", timeout=60):
        path = f"/users/{name}/servers/{server}" if server else f"/users/{name}/server"
        r = self.api("DELETE", path)
        assert r.status_code in (202, 204), r.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.server(name, server):
            time.sleep(0.3)

    def user_get(self, name, path, **kwargs):
        """GET a path of the user's server through the proxy, as the admin service."""
        headers = {"Authorization": f"token {self.token}"}
        return requests.get(f"{self.url}/user/{name}{path}", headers=headers, timeout=30, **kwargs)
