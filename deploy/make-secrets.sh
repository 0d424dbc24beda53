#!/usr/bin/env bash
# Create the secret files the deployment can make itself, root-owned and 0600, under
# ${SECRETS_DIR:-deploy/secrets}; never overwrites one. Two are yours to put there:
#   hub/oidc_client_secret  the client secret your identity provider issued for the hub
#   nginx/tls.key, nginx/tls.crt  the hub's TLS key and certificate (chain)
# Then `docker-compose run --rm secrets` (or `up`) checks them all.
set -euo pipefail
dir="${SECRETS_DIR:-$(cd "$(dirname "$0")" && pwd)/secrets}"
umask 077
mkdir -p "$dir/hub" "$dir/db" "$dir/nginx"
make() { [ -e "$dir/$1" ] || { "${@:2}" >"$dir/$1"; echo "created $dir/$1"; }; }
make hub/cookie_secret openssl rand -hex 32
make hub/crypt_key openssl rand -hex 32
make db/postgres_password openssl rand -hex 24
[ -e "$dir/hub/ssh_gateway_host_key" ] || ssh-keygen -q -t ed25519 -N '' -C hub-gateway -f "$dir/hub/ssh_gateway_host_key"
[ -e "$dir/hub/ssh_host_ca_key" ] || ssh-keygen -q -t ed25519 -N '' -C hub-host-ca -f "$dir/hub/ssh_host_ca_key"
chown -R 0:0 "$dir"; chmod 700 "$dir" "$dir"/*; find "$dir" -type f ! -name '*.pub' ! -name '*.crt' -exec chmod 600 {} +
