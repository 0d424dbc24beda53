"""The hub's configuration in the deployment (deploy/docker-compose.yml, docs/deployment.md).

Mounted read-only at /etc/jupyterhub/jupyterhub_config.py: edit it here and restart the hub
container (``docker-compose restart hub``); servers keep running. Secrets are read from files
under /run/hs-secrets (checked: root-owned, 0600, present), never from the environment; the
other settings come from the environment compose passes (deploy/.env).
"""

import json
import os
from urllib.request import urlopen

from hardened_spawner.config_check import enforce_config
from hardened_spawner.operations.hub import configure as configure_operations
from hardened_spawner.pages import TEMPLATES as REFUSAL_TEMPLATES
from hardened_spawner.spawner.clients import docker_client
from hardened_spawner.spawner.networks import join_server_networks, own_container_id
from hardened_spawner.ssh.service import (
    TEMPLATES as SSH_TEMPLATES, gateway_role, gateway_service, hub_config_file, keys_role, keys_scopes, keys_service,
    ssh_template_vars,
)
from hardened_spawner.tools.secret_files import read as secret

c = get_config()  # noqa: F821 (provided by JupyterHub)
env = os.environ.get
SECRETS = "/run/hs-secrets"
STATE = "/srv/jupyterhub"  # the hub-data volume: SSH keys users added, audit log
public_url = env("HS_PUBLIC_URL").rstrip("/")  # https://hub.example.org (what nginx serves)
public_host = public_url.split("://", 1)[1].split("/")[0].split(":")[0]

# --- the hub, behind nginx -----------------------------------------------------
c.JupyterHub.bind_url = "http://0.0.0.0:8000"  # the proxy; nginx (frontend network) is its only client
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
# The proxy and the SSH services (in this container) reach the hub on loopback; "hub" would resolve to
# this container's address on some user's network, which goes away when that user's last server stops.
c.JupyterHub.hub_connect_url = "http://127.0.0.1:8081"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:8001"
c.ConfigurableHTTPProxy.pid_file = os.path.join(STATE, "proxy.pid")
c.JupyterHub.trusted_downstream_ips = ["0.0.0.0/0"]  # X-Forwarded-* from nginx, the only way in
c.JupyterHub.db_url = f"postgresql+psycopg://jupyterhub:{secret(SECRETS, 'db/postgres_password')}@db:5432/jupyterhub"
c.JupyterHub.cookie_secret = bytes.fromhex(secret(SECRETS, "hub/cookie_secret"))
c.CryptKeeper.keys = [secret(SECRETS, "hub/crypt_key")]
# Restarting or upgrading the hub leaves users' servers running (docs/deployment.md, Upgrades).
c.JupyterHub.cleanup_servers = False
c.JupyterHub.template_paths = [SSH_TEMPLATES, REFUSAL_TEMPLATES]

# --- who may log in: your OpenID Connect provider ------------------------------
issuer = env("HS_OIDC_ISSUER").rstrip("/")
with urlopen(f"{issuer}/.well-known/openid-configuration", timeout=30) as r:
    discovery = json.load(r)
c.JupyterHub.authenticator_class = "hardened-oauth"
oidc = c.HardenedOAuthenticator
oidc.login_service = env("HS_OIDC_NAME", "your identity provider")
oidc.client_id = env("HS_OIDC_CLIENT_ID")
oidc.client_secret = secret(SECRETS, "hub/oidc_client_secret")
oidc.oauth_callback_url = f"{public_url}/hub/oauth_callback"
oidc.authorize_url = discovery["authorization_endpoint"]
oidc.token_url = discovery["token_endpoint"]
oidc.userdata_url = discovery["userinfo_endpoint"]
oidc.jwks_url = discovery["jwks_uri"]
oidc.id_token_issuer = discovery["issuer"]
oidc.scope = ["openid", "profile", "email"]
oidc.basic_auth = True
oidc.username_claim = "preferred_username"
oidc.idp_groups_claim = "groups"
# IdP groups -> entitlements (docs/authentication.md): edit for your IdP's groups.
oidc.entitlement_rules = [
    {"value": "staff", "groups": ["cpu-users"]},
    {"value": "ml-gpu", "groups": ["gpu-users"], "gpus": 1},
    {"value": "hub-admins", "admin": True},
]
oidc.audit_log_file = os.path.join(STATE, "audit.log")

# --- the hardened spawner: each user's servers on a network of their own --------
c.JupyterHub.spawner_class = "hardened-docker"
spawner = c.HardenedDockerSpawner
spawner.image = env("HS_SINGLEUSER_IMAGE", "hardened-spawner/singleuser:local")
spawner.pull_policy = "ifnotpresent"
spawner.remove = True
spawner.use_internal_ip = True
spawner.volumes = {"jupyterhub-user-{username}": "/home/jovyan"}
spawner.notebook_dir = "/home/jovyan"
spawner.read_only_root = True  # the default: home (the volume above) and /tmp are the writable places
spawner.audit_log_file = os.path.join(STATE, "audit.log")
# The hub runs in a container: a shared ICC-off bridge would cut it off from the servers too.
# Each user gets a bridge (subnets from network_pool); this container joins each; the hub proves
# with two probe containers that the networks keep users apart before the first spawn on each.
spawner.network_per_user = True
spawner.hub_connect_url = "http://hub:8081"  # servers reach the hub as "hub" on their own network
hub_container = own_container_id()
spawner.network_peers = [hub_container]
# A replaced hub container (an upgrade) rejoins the networks of the servers that kept running.
join_server_networks(docker_client(), hub_container)
spawner.mem_limit = "2G"
spawner.cpu_limit = 1.0
spawner.pids_limit = 1024
spawner.profiles = [
    {"slug": "cpu", "display_name": "CPU", "cpu_limit": 1.0, "mem_limit": "2G", "groups": ["cpu-users"],
     "default": True},
    {"slug": "gpu-1", "display_name": "One GPU", "cpu_limit": 2.0, "mem_limit": "4G", "gpus": 1,
     "groups": ["gpu-users"]},
]
if env("HS_GPU_IDS"):
    spawner.gpu_ids = env("HS_GPU_IDS").split(",")

# --- SSH: the keys page and the gateway (nginx passes its port) -----------------
ssh_port = int(env("HS_SSH_PUBLIC_PORT", "22"))
ssh_keys_dir = os.path.join(STATE, "ssh-keys")
os.makedirs(ssh_keys_dir, mode=0o755, exist_ok=True)
host_key = os.path.join(SECRETS, "hub/ssh_gateway_host_key")
c.FileKeyStore.root = ssh_keys_dir
spawner.ssh_gateway_host = public_host
spawner.ssh_gateway_port = ssh_port
spawner.ssh_host_ca_key_file = os.path.join(SECRETS, "hub/ssh_host_ca_key")  # certifies the servers' host keys
c.SSHGateway.ip = "0.0.0.0"
c.SSHGateway.port = 8022
c.SSHGateway.public_host = public_host
c.SSHGateway.host_key_file = host_key
c.JupyterHub.services.append(keys_service(hub_config_file(__file__), "http://127.0.0.1:8023"))
c.JupyterHub.load_roles.append(keys_role())
c.JupyterHub.services.append(gateway_service(hub_config_file(__file__), "http://127.0.0.1:8023"))
c.JupyterHub.load_roles.append(gateway_role(False))
keys_scopes(c)
c.JupyterHub.template_vars.update(ssh_template_vars(public_host, ssh_port, host_key_file=host_key))
configure_operations(c, reporters=("ssh-gateway", "ssh-keys"))

enforce_config(c)
