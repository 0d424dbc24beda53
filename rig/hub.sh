#!/usr/bin/env bash
# The main job: a JupyterHub on http://127.0.0.1:8000 with HardenedDockerSpawner
# on the local Docker daemon, configured by ./jupyterhub_config.py.
# Installs what is missing, starts a private dockerd only if no daemon is
# reachable, builds the single-user image if missing, and stops what it started.
source "$(dirname "$0")/lib.sh"
"$HS_REPO/rig/install.sh"

started_daemon=0
if ! docker version >/dev/null 2>&1; then
    export DOCKER_HOST="unix://$("$HS_REPO/rig/dockerd.sh" start main)"
    started_daemon=1
fi
cleanup() { [ "$started_daemon" = 1 ] && "$HS_REPO/rig/dockerd.sh" stop main; }
trap cleanup EXIT
log "Docker daemon: ${DOCKER_HOST:-default socket}"

"$HS_REPO/rig/images.sh"

export HS_DEMO_PASSWORD="${HS_DEMO_PASSWORD:-$(head -c 12 /dev/urandom | base64 | tr -d '/+=')}"
cat >&2 <<MSG

  JupyterHub with HardenedDockerSpawner: http://127.0.0.1:8000
  Log in with any user name (e.g. alice) and the password: $HS_DEMO_PASSWORD
  The user "admin" is a hub admin. Audit log: ${HS_HUB_STATE:-$HS_REPO/.hub}/audit.log
  Stop with Ctrl-C.

MSG
cd "$HS_REPO"
jupyterhub -f "$HS_REPO/jupyterhub_config.py" "$@"
