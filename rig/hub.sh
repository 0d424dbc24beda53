#!/usr/bin/env bash
# The main job: a JupyterHub on http://127.0.0.1:8000 with HardenedDockerSpawner
# on the local Docker daemon, configured by ./jupyterhub_config.py, logging users
# in with HardenedOAuthenticator at a local demo OIDC provider (rig/oidc.sh; set
# HS_OIDC_ISSUER to use another, or HS_AUTH=dummy for a shared password).
# Installs what is missing, starts a private dockerd only if no daemon is
# reachable, builds the single-user image if missing, and stops what it started.
source "$(dirname "$0")/lib.sh"
"$HS_REPO/rig/install.sh"

started_daemon=0
if ! docker version >/dev/null 2>&1; then
    # in a session of its own, so a Ctrl-C at the terminal does not reach dockerd: the hub stops first (below)
    export DOCKER_HOST="unix://$(setsid -w "$HS_REPO/rig/dockerd.sh" start main)"
    started_daemon=1
fi
idp_pid=""
cleanup() {
    [ -n "$idp_pid" ] && kill "$idp_pid" 2>/dev/null
    [ "$started_daemon" = 1 ] && "$HS_REPO/rig/dockerd.sh" stop main
    true
}
trap cleanup EXIT
log "Docker daemon: ${DOCKER_HOST:-default socket}"

"$HS_REPO/rig/images.sh"

export HS_AUTH="${HS_AUTH:-oidc}"
if [ "$HS_AUTH" = dummy ]; then
    export HS_DEMO_PASSWORD="${HS_DEMO_PASSWORD:-$(head -c 12 /dev/urandom | base64 | tr -d '/+=')}"
    who="Log in with any user name (e.g. alice) and the password: $HS_DEMO_PASSWORD
  The user \"admin\" is a hub admin."
else
    unset HS_DEMO_PASSWORD
    if [ -z "${HS_OIDC_ISSUER:-}" ]; then
        # no identity provider given: start the local demo one (rig/oidc.sh)
        export HS_OIDC_PORT="${HS_OIDC_PORT:-9400}" HS_OIDC_ISSUER="http://127.0.0.1:${HS_OIDC_PORT:-9400}"
        state="${HS_HUB_STATE:-$HS_REPO/.hub}"; mkdir -p -m 700 "$state"
        "$HS_REPO/rig/oidc.sh" >"$state/oidc.log" 2>&1 &
        idp_pid=$!
        until "$HS_PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
                "$HS_OIDC_ISSUER/.well-known/openid-configuration" 2>/dev/null; do
            kill -0 "$idp_pid" 2>/dev/null || { log "rig/oidc.sh exited:"; cat "$state/oidc.log" >&2; exit 1; }
            sleep 0.5
        done
        log "demo identity provider: $HS_OIDC_ISSUER (log: $state/oidc.log)"
    fi
    who="Log in at the identity provider $HS_OIDC_ISSUER. Demo users: alice (GPU profile),
  bob (CPU only), carol (hub admin); the IdP groups they get decide what they may use."
fi
cat >&2 <<MSG

  JupyterHub with HardenedDockerSpawner: ${HS_BIND_URL:-http://127.0.0.1:8000}
  $who
  Audit log: ${HS_HUB_STATE:-$HS_REPO/.hub}/audit.log
  Stop with Ctrl-C.

MSG
cd "$HS_REPO"
# Ctrl-C or SIGTERM: the hub stops (and stops the servers, cleanup_servers) while Docker is still up, and
# only then does cleanup stop what this script started. A Ctrl-C reaches the hub itself (it shares the
# terminal's process group and handles SIGINT); a SIGTERM to this script is passed on. Either way the
# script waits for the hub instead of exiting at once.
jupyterhub -f "$HS_REPO/jupyterhub_config.py" "$@" &
hub_pid=$!
trap ':' INT
trap 'kill -TERM "$hub_pid" 2>/dev/null || true' TERM
status=0
while :; do
    status=0
    wait "$hub_pid" || status=$?
    kill -0 "$hub_pid" 2>/dev/null || break  # wait returns early when a signal is trapped: wait again
done
exit "$status"
