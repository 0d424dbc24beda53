#!/bin/sh
# The hub container's start: the secret files first (nothing starts with a bad one), then the hub.
set -eu
hardened-spawner check-secrets --dir /run/hs-secrets \
    hub/cookie_secret hub/crypt_key hub/oidc_client_secret hub/ssh_gateway_host_key hub/ssh_host_ca_key db/postgres_password
cd /srv/jupyterhub
exec jupyterhub -f /etc/jupyterhub/jupyterhub_config.py "$@"
