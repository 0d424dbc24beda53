"""JupyterHub configuration for hardened_spawner: the embedded default.

`bash rig/hub.sh` runs a hub with this file on http://127.0.0.1:8000.
Every value marked ENV can be set from the environment, so the same file
serves the demo, the tests and a first production install.
"""

import os

from hardened_spawner.authenticator import with_withdrawals
from hardened_spawner.config_check import enforce_config
from hardened_spawner.pages import TEMPLATES as REFUSAL_TEMPLATES
from hardened_spawner.spawner.clients import docker_client
from hardened_spawner.spawner.networks import bridge_gateway

c = get_config()  # noqa: F821 (provided by JupyterHub)
env = os.environ.get

state_dir = env("HS_HUB_STATE", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".hub"))
os.makedirs(state_dir, mode=0o700, exist_ok=True)


def _bridge_gateway():
    """The address containers use to reach the hub: the bridge's gateway (docker0)."""
    try:
        return bridge_gateway(docker_client())
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
# What people see when the hub says no (docs/refusals.md): refusals with their
# findings on the spawn pages, the access-withdrawn page.
c.JupyterHub.template_paths.insert(0, REFUSAL_TEMPLATES)

# --- who may log in --------------------------------------------------------
# HS_AUTH=oidc (what rig/hub.sh runs): HardenedOAuthenticator against the OpenID
# Connect provider at HS_OIDC_ISSUER; rig/oidc.sh starts a local one with the demo
# users alice (GPU), bob (CPU) and carol (admin). Production: your IdP, see
# docs/authentication.md. HS_AUTH=dummy: one shared password (HS_DEMO_PASSWORD),
# used by the tests that drive the hub through its REST API.
auth = env("HS_AUTH") or ("dummy" if env("HS_DEMO_PASSWORD") else "oidc")  # ENV
if auth == "dummy":
    from jupyterhub.auth import DummyAuthenticator

    # with_withdrawals: a refused spawn's REST answer carries its reason, findings and
    # reference id, and blocked_users / removal from allowed_users stop the user's servers,
    # close their SSH sessions and refuse their spawns (HardenedOAuthenticator below has both built in).
    c.JupyterHub.authenticator_class = with_withdrawals(DummyAuthenticator)
    c.DummyAuthenticator.password = env("HS_DEMO_PASSWORD", "")
    c.Authenticator.allow_all = True
    c.Authenticator.admin_users = {"admin"}
else:
    issuer = env("HS_OIDC_ISSUER", "http://127.0.0.1:9400")  # ENV
    c.JupyterHub.authenticator_class = "hardened-oauth"
    oidc = c.HardenedOAuthenticator
    oidc.login_service = env("HS_OIDC_NAME", "the demo identity provider")  # ENV
    oidc.client_id = env("HS_OIDC_CLIENT_ID", "hardened-spawner-demo")      # ENV
    oidc.client_secret = env("HS_OIDC_CLIENT_SECRET", "demo-secret")        # ENV
    # Endpoints of rig/oidc.sh's provider (its discovery document lists them).
    oidc.authorize_url = f"{issuer}/oauth2/authorize"
    oidc.token_url = f"{issuer}/oauth2/token"
    oidc.userdata_url = f"{issuer}/userinfo"
    oidc.jwks_url = f"{issuer}/jwks"
    oidc.id_token_issuer = issuer
    oidc.scope = ["openid", "profile", "email"]
    oidc.basic_auth = True  # client_secret_basic, the OIDC default
    oidc.username_claim = "preferred_username"
    # IdP groups -> entitlements. The groups are read as GenericOAuthenticator reads
    # them (auth_state_groups_key: a dotted path into auth_state, or a callable);
    # the rules turn them into hub groups, which gate profiles; admin follows the IdP.
    oidc.auth_state_groups_key = "oauth_user.groups"
    oidc.entitlement_rules = [
        {"value": "staff", "groups": ["cpu-users"]},
        {"value": "ml-gpu", "groups": ["gpu-users"], "gpus": 1},
        {"value": "hub-admins", "admin": True},
    ]
    # Every refresh asks the IdP again; auth_refresh_strict and enable_auth_state are
    # on by default in HardenedOAuthenticator, and manage_groups is with rules.
    c.Authenticator.auth_refresh_age = int(env("HS_AUTH_REFRESH_AGE", "300"))  # ENV
    oidc.audit_log_file = env("HS_AUDIT_LOG", os.path.join(state_dir, "audit.log"))
    # auth_state (tokens) is encrypted: JUPYTERHUB_CRYPT_KEY, or a key kept in the state dir.
    if not env("JUPYTERHUB_CRYPT_KEY"):
        key_file = os.path.join(state_dir, "crypt_key")
        if not os.path.exists(key_file):
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, os.urandom(32).hex().encode())
            os.close(fd)
        with open(key_file) as f:
            c.CryptKeeper.keys = [f.read().strip()]
    # The demo's profiles, gated by the hub groups the rules above grant: alice sees
    # both, bob only the CPU one. HS_GPU_IDS: the GPUs to hand out (the rig's
    # daemon has a stand-in NVIDIA hook; on a host without GPUs the GPU spawn is
    # refused with a clear message).
    c.HardenedDockerSpawner.profiles = [
        {"slug": "cpu", "display_name": "CPU", "description": "For notebooks and data wrangling.",
         "cpu_limit": 1.0, "mem_limit": "2G", "groups": ["cpu-users"], "default": True},
        {"slug": "gpu-1", "display_name": "One GPU", "description": "For training models.",
         "cpu_limit": 2.0, "mem_limit": "4G", "gpus": 1, "groups": ["gpu-users"]},
    ]
    c.HardenedDockerSpawner.gpu_ids = env("HS_GPU_IDS", "0,1").split(",")  # ENV

# --- the hardened spawner ----------------------------------------------------
c.JupyterHub.spawner_class = "hardened-docker"
c.HardenedDockerSpawner.image = env("HS_SINGLEUSER_IMAGE", "hardened-spawner/singleuser:local")  # ENV
c.HardenedDockerSpawner.pull_policy = "ifnotpresent"
c.HardenedDockerSpawner.remove = True             # containers go; work stays in the home volume
c.HardenedDockerSpawner.use_internal_ip = True    # no port published on the host
# Servers share the network "hardened-spawner" (network_name's default), created on first use
# with inter-container communication off: the hub, proxy and SSH gateway reach each server from
# the host, no user's container reaches another's (docs/security.md). isolate_containers=False
# opts out. (Not set here: HardenedSwarmSpawner reads these settings too, and needs an overlay.)
c.HardenedDockerSpawner.notebook_dir = "/home/jovyan"
c.HardenedDockerSpawner.volumes = {"jupyterhub-user-{username}": "/home/jovyan"}
c.HardenedDockerSpawner.start_timeout = 120
c.HardenedDockerSpawner.http_timeout = 90

# Limits for every server (a default profile). Absurd values are refused.
c.HardenedDockerSpawner.mem_limit = "2G"
c.HardenedDockerSpawner.cpu_limit = 1.0
c.HardenedDockerSpawner.pids_limit = 1024
c.HardenedDockerSpawner.shm_size = "256m"
# Resource profiles (docs/profiles-and-gpus.md): users pick one in the form, hub
# groups gate each, GPUs are allocated one server per GPU. Without profiles every
# server gets the limits above (the HS_AUTH=oidc demo above sets two).
# c.HardenedDockerSpawner.profiles = [
#     {"slug": "small", "display_name": "Small", "cpu_limit": 2, "mem_limit": "4G", "default": True},
#     {"slug": "gpu", "display_name": "One GPU", "cpu_limit": 8, "mem_limit": "48G",
#      "shm_size": "8G", "gpus": 1, "groups": ["ml"]},
# ]
# c.HardenedDockerSpawner.gpu_ids = ["0", "1", "2", "3"]  # empty: ask nvidia-smi
# c.HardenedDockerSpawner.max_gpus_per_user = 2           # across a user's servers

# A read-only root filesystem (the default; home and /tmp stay writable). HS_READ_ONLY_ROOT=0: a
# writable root, for images that must write outside their home and /tmp.
c.HardenedDockerSpawner.read_only_root = env("HS_READ_ONLY_ROOT", "1") == "1"  # ENV

# One JSON line per spawn, stop and denial.
c.HardenedDockerSpawner.audit_log_file = env("HS_AUDIT_LOG", os.path.join(state_dir, "audit.log"))  # ENV

# --- SSH: users' keys, the SSH keys page, sshd in the image, the SSH gateway --------
# Users add and remove their public keys on the "SSH keys" page (a managed service,
# /services/ssh-keys/), stored in <HS_SSH_KEYS_DIR>/<username>/authorized_keys
# (docs/ssh-admins.md shows Vault KV v2 and keys from the identity provider);
# running servers get them within seconds. The gateway is a managed service on one port:
#   ssh -J <user>@<HS_SSH_GATEWAY_HOST>:<port> jovyan@<user>
from hardened_spawner.ssh.service import (  # noqa: E402
    TEMPLATES, gateway_role, gateway_service, hub_config_file, keys_role, keys_scopes, keys_service,
    ssh_template_vars,
)

ssh_keys_dir = env("HS_SSH_KEYS_DIR", os.path.join(state_dir, "ssh-keys"))  # ENV
os.makedirs(ssh_keys_dir, mode=0o755, exist_ok=True)
c.FileKeyStore.root = ssh_keys_dir
if env("HS_SSH_IDP_KEYS", "0") == "1":  # ENV; also the keys in the IdP's "ssh_public_keys" claim
    c.HardenedDockerSpawner.ssh_key_store_class = "idp"
    c.IdPKeyStore.claim = "ssh_public_keys"
    c.IdPKeyStore.combine_with = "file"
ssh_gateway_ip = env("HS_SSH_GATEWAY_IP", "127.0.0.1")  # ENV; 0.0.0.0 to serve every interface
ssh_gateway_host = env("HS_SSH_GATEWAY_HOST", ssh_gateway_ip)  # ENV; the name users connect to
ssh_gateway_port = int(env("HS_SSH_GATEWAY_PORT", "8022"))  # ENV
ssh_start_servers = env("HS_SSH_GATEWAY_START_SERVERS", "0") == "1"  # ENV
ssh_keys_url = f"http://127.0.0.1:{env('HS_SSH_KEYS_PORT', '8023')}"  # ENV; the keys service, loopback only
ssh_host_key = os.path.join(state_dir, "ssh_gateway_host_ed25519_key")
# The hub is the SSH certificate authority of its servers' host keys: it makes each
# container's host key at every start and certifies it for the names users type
# (alice, alice.<server>); users trust it with one @cert-authority line (home page).
# Keep this key like the gateway's (created 0600 on first use). For a rotation, list the
# other CA's public key: c.HardenedDockerSpawner.ssh_host_ca_accepted_keys = ["ssh-ed25519 AAAA..."]
c.HardenedDockerSpawner.ssh_host_ca_key_file = os.path.join(state_dir, "ssh_host_ca_ed25519_key")
# No standing user keys in containers: they trust only this CA, and users get a short-lived
# certificate for a registered key from the SSH keys page or its API (docs/ssh-users.md):
# c.HardenedDockerSpawner.ssh_user_certificates = True
# c.HardenedDockerSpawner.ssh_user_certificate_hours = 8
c.HardenedDockerSpawner.ssh_gateway_host = ssh_gateway_host
c.HardenedDockerSpawner.ssh_gateway_port = ssh_gateway_port
c.SSHGateway.ip = ssh_gateway_ip
c.SSHGateway.port = ssh_gateway_port
c.SSHGateway.public_host = ssh_gateway_host
c.SSHGateway.start_servers = ssh_start_servers
c.SSHGateway.host_key_file = ssh_host_key
c.JupyterHub.services.append(keys_service(hub_config_file(__file__), ssh_keys_url))
c.JupyterHub.load_roles.append(keys_role(auth_state=env("HS_SSH_IDP_KEYS", "0") == "1"))
c.JupyterHub.services.append(gateway_service(hub_config_file(__file__), ssh_keys_url))
c.JupyterHub.load_roles.append(gateway_role(ssh_start_servers))
keys_scopes(c)  # every user manages their own keys; admins anyone's
c.JupyterHub.template_paths.insert(0, TEMPLATES)  # before the default templates it extends
c.JupyterHub.template_vars.update(ssh_template_vars(ssh_gateway_host, ssh_gateway_port,
                                                    host_key_file=ssh_host_key))

# --- Operating the hub (docs/operations.md) ---------------------------------------
# Prometheus metrics are on /hub/metrics (scope read:metrics) with nothing to set.
# The operations page (/hub/operations, for admins), the GPU reclaim notices on hub
# pages, and the gateway's audit records reaching the hub's metrics and events:
from hardened_spawner.operations.hub import configure as configure_operations  # noqa: E402

configure_operations(c, reporters=("ssh-gateway", "ssh-keys"))  # both SSH services forward their audit records
# Audit records are also jupyter_events (schemas urn:hardened-spawner:events:*):
# route them, with JupyterHub's own, by giving the hub's event logger handlers.
if env("HS_EVENTS_LOG"):  # ENV
    import logging  # noqa: E402

    c.EventLogger.handlers = [logging.FileHandler(env("HS_EVENTS_LOG"))]
# Take GPUs back from idle servers (a profile's gpu_idle_minutes / gpu_max_age_minutes
# keys override these): warn on the hub's pages, then stop the server.
# c.HardenedDockerSpawner.gpu_idle_minutes = 60
# c.HardenedDockerSpawner.gpu_max_age_minutes = 24 * 60

# --- Beyond one host: Docker Swarm (docs/swarm.md) ------------------------------
# The same policy on a swarm manager (DOCKER_HOST): GPUs become NVIDIA-GPU generic
# resources, SSH keys swarm secrets, and tasks run only on nodes that attest
# daemon-wide no-new-privileges.
# c.JupyterHub.spawner_class = "hardened-swarm"
# c.HardenedSwarmSpawner.use_internal_ip = False   # host-mode published ports
# c.HardenedSwarmSpawner.placement_constraints = {"gpu-1": ["node.labels.gpu == true"]}

# Refuse to start if anything above (or in a file that loads this one) is unsafe:
# privileged, host namespaces, docker.sock or host system paths, uid 0, absurd limits.
enforce_config(c)
