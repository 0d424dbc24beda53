"""JupyterHub configuration for hardened_spawner: the embedded default.

`bash rig/hub.sh` runs a hub with this file on http://127.0.0.1:8000.
Every value marked ENV can be set from the environment, so the same file
serves the demo, the tests and a first production install.
"""

import os

import docker

from hardened_spawner.config_check import enforce_config

c = get_config()  # noqa: F821 (provided by JupyterHub)
env = os.environ.get

state_dir = env("HS_HUB_STATE", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".hub"))
os.makedirs(state_dir, mode=0o700, exist_ok=True)


def _bridge_gateway():
    """The address containers use to reach the hub: the bridge's gateway (docker0)."""
    try:
        network = docker.from_env().networks.get("bridge")
        return network.attrs["IPAM"]["Config"][0]["Gateway"]
    except Exception:
        return "172.17.0.1"


# --- the hub -------------------------------------------------------------
c.JupyterHub.bind_url = env("HS_BIND_URL", "http://127.0.0.1:8000")  # ENV
hub_ip = env("HS_HUB_IP") or _bridge_gateway()                      # ENV
# The hub API listens only on the Docker bridge, where containers reach it.
c.JupyterHub.hub_bind_url = f"http://{hub_ip}:{env('HS_HUB_PORT', '8081')}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env('HS_PROXY_API_PORT', '8001')}"
c.JupyterHub.db_url = "sqlite:///" + os.path.join(state_dir, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(state_dir, "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = os.path.join(state_dir, "proxy.pid")
c.JupyterHub.cleanup_servers = True

# --- who may log in --------------------------------------------------------
# The demo uses JupyterHub's dummy authenticator with one shared password
# (rig/hub.sh generates and prints it). Production: HardenedOAuthenticator.
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = env("HS_DEMO_PASSWORD", "")
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {"admin"}

# --- the hardened spawner ----------------------------------------------------
c.JupyterHub.spawner_class = "hardened-docker"
c.HardenedDockerSpawner.image = env("HS_SINGLEUSER_IMAGE", "hardened-spawner/singleuser:local")  # ENV
c.HardenedDockerSpawner.pull_policy = "ifnotpresent"
c.HardenedDockerSpawner.remove = True             # containers go; work stays in the home volume
c.HardenedDockerSpawner.use_internal_ip = True    # no port published on the host
c.HardenedDockerSpawner.network_name = "bridge"
c.HardenedDockerSpawner.notebook_dir = "/home/jovyan"
c.HardenedDockerSpawner.volumes = {"jupyterhub-user-{username}": "/home/jovyan"}
c.HardenedDockerSpawner.start_timeout = 120
c.HardenedDockerSpawner.http_timeout = 90

# Limits for every server (a default profile). Absurd values are refused.
c.HardenedDockerSpawner.mem_limit = "2G"
c.HardenedDockerSpawner.cpu_limit = 1.0
c.HardenedDockerSpawner.pids_limit = 1024
c.HardenedDockerSpawner.shm_size = "256m"

# Optional: a read-only root filesystem (home and /tmp stay writable).
c.HardenedDockerSpawner.read_only_root = env("HS_READ_ONLY_ROOT", "0") == "1"  # ENV

# One JSON line per spawn, stop and denial.
c.HardenedDockerSpawner.audit_log_file = env("HS_AUDIT_LOG", os.path.join(state_dir, "audit.log"))  # ENV

# Refuse to start if anything above (or in a file that loads this one) is unsafe:
# privileged, host namespaces, docker.sock or host system paths, uid 0, absurd limits.
enforce_config(c)
