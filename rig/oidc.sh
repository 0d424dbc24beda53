#!/usr/bin/env bash
# A local OpenID Connect provider (oidc-provider-mock, PyPI) with the demo users,
# on loopback only, in the foreground. For the demo hub and the tests; never
# for production (any client id and secret are accepted).
#   HS_OIDC_PORT           port (default 9400); the issuer is http://HOST:PORT
#   HS_OIDC_HOST           address to listen on (default 127.0.0.1; the deployment test: the
#                          docker0 address, where the hub container reaches it)
#   HS_OIDC_TOKEN_MAX_AGE  access/id token lifetime in seconds (default 3600)
# Demo users (log in by clicking the name on the provider's page):
#   alice  IdP groups staff, ml-gpu      -> CPU and GPU profiles
#   bob    IdP group  staff              -> CPU profiles only
#   carol  IdP groups staff, hub-admins  -> hub admin
# At run time the tests change a user's claims with
#   PUT  /users/<sub>                (JSON body: the user's claims)
# and revoke every token of a user with
#   POST /users/<sub>/revoke-tokens
source "$(dirname "$0")/lib.sh"

port="${HS_OIDC_PORT:-9400}"
user() {  # sub, display name, groups as a JSON list
    printf '{"sub": "%s", "preferred_username": "%s", "name": "%s", "email": "%s@example.org", "email_verified": true, "groups": %s}' \
        "$1" "$1" "$2" "$1" "$3"
}
exec "$HS_PYTHON" -m oidc_provider_mock --host "${HS_OIDC_HOST:-127.0.0.1}" --port "$port" \
    --token-max-age "${HS_OIDC_TOKEN_MAX_AGE:-3600}" \
    --user-claims "$(user alice 'Alice (GPU user)' '["staff", "ml-gpu"]')" \
    --user-claims "$(user bob 'Bob (CPU user)' '["staff"]')" \
    --user-claims "$(user carol 'Carol (hub admin)' '["staff", "hub-admins"]')"
