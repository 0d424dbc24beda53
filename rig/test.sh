#!/usr/bin/env bash
# The test command: installs what is missing, starts the rig's private dockerd
# (with the stand-in NVIDIA hook), builds the images, runs the tests and the
# docs build, and stops every daemon it started. Arguments go to pytest.
source "$(dirname "$0")/lib.sh"
"$HS_REPO/rig/install.sh"
cd "$HS_REPO"
# The docs first: a stale reference fails in seconds, not after the image builds.
log "building docs"
fresh="$(mktemp)"
"$HS_PYTHON" -m hardened_spawner.tools.docs_reference "$fresh"
if ! cmp -s "$fresh" docs/reference.md; then
    log "docs/reference.md does not match the traits' help strings:"
    log "run: python3 -m hardened_spawner.tools.docs_reference docs/reference.md"
    diff -u docs/reference.md "$fresh" | head -n 40 >&2; rm -f "$fresh"; exit 1
fi
rm -f "$fresh"
# The admission rule tables in docs/ are generated from the rule registry the same way.
if ! "$HS_PYTHON" -m hardened_spawner.tools.docs_rules --check docs 2> >(head -n 40 >&2); then
    log "the rule tables in docs/ do not match the admission rule registry:"
    log "run: python3 -m hardened_spawner.tools.docs_rules docs"; exit 1
fi
"$HS_PYTHON" -m mkdocs build --strict --quiet --site-dir "$HS_REPO/site"

started=()
cleanup() {
    for name in "${started[@]}"; do "$HS_REPO/rig/dockerd.sh" stop "$name" || true; done
}
trap cleanup EXIT
# A daemon that was already running (a developer's, the demo hub's) is used
# and left running; one this script starts is stopped at the end.
# HS_DOCKERD names the daemon (default main); another name gets its own bridge,
# so a second checkout can run its tests beside the first.
daemon="${HS_DOCKERD:-main}"
"$HS_REPO/rig/dockerd.sh" status "$daemon" || started+=("$daemon")
sock="$("$HS_REPO/rig/dockerd.sh" start "$daemon")"
export DOCKER_HOST="unix://$sock"
"$HS_REPO/rig/images.sh"
"$HS_REPO/rig/test-images.sh"   # admission test images (tests/images)
"$HS_REPO/rig/conda-images.sh"  # real conda environments and common image shapes (tests/images/*.Dockerfile)
"$HS_REPO/rig/conda-evasion-images.sh"  # ways around the conda policy, on the real conda images

export HS_SINGLEUSER_IMAGE HS_BASE_IMAGE
mkdir -p "$HS_REPO/artifacts"
cd "$HS_REPO"
log "running tests"
# The tests wait on hubs, containers and browsers far more than they compute: three
# pytest-xdist workers, each test module on one worker (tests/conftest.py groups them).
# Its own temporary root: pytest prunes all but the last three roots under /tmp/pytest-of-$USER,
# which deletes the hubs' state from under a second checkout's run on the same machine.
"$HS_PYTHON" -m pytest -p no:cacheprovider -n "${HS_TEST_WORKERS:-3}" --dist loadgroup \
    --basetemp "$(mktemp -d /tmp/hs-pytest.XXXXXX)" --durations=25 --junitxml "$HS_REPO/artifacts/pytest.xml" "$@"
# What users install: the wheel (built from the sdist) in a clean virtualenv, tests/installed
# run from it (skipped when arguments choose what to run).
if [ $# -eq 0 ]; then "$HS_REPO/rig/wheel-test.sh"; fi
