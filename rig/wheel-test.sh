#!/usr/bin/env bash
# What users install: build the sdist and, from it, the wheel (into $HS_DIST, default
# $HS_RIG_STATE/dist); install the wheel (not editable) into a fresh virtual environment;
# run tests/installed with that environment's Python from a directory outside the
# checkout, so nothing is imported from the work tree. Arguments go to pytest.
# DOCKER_HOST must name a daemon with the rig's images (rig/test.sh runs this).
source "$(dirname "$0")/lib.sh"
dist="${HS_DIST:-$HS_RIG_STATE/dist}"
venv="$HS_RIG_STATE/wheel-venv"
rm -rf "$dist" "$venv"; mkdir -p "$dist"
log "building the sdist and the wheel (from the sdist) into $dist"
"$HS_PYTHON" -m build --no-isolation --outdir "$dist" "$HS_REPO" >"$dist/build.log" 2>&1 \
    || { tail -n 30 "$dist/build.log" >&2; exit 1; }
wheel="$(ls "$dist"/hardened_spawner-*.whl)"
log "installing $(basename "$wheel") into a clean virtualenv ($venv)"
"$HS_PYTHON" -m venv "$venv"
# the wheel and its dependencies, and only what tests/conftest.py needs to run
"$venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel" \
    pytest pytest-asyncio pytest-xdist hypothesis 2>&1 | grep -v -e "^WARNING: Location" >&2 || true
"$venv/bin/python" -c 'import hardened_spawner' || { log "the wheel did not install"; exit 1; }
run="$(mktemp -d)"; trap 'rm -rf "$run"' EXIT
cd "$run"
log "running tests/installed from the installed wheel"
HS_WHEEL_RUN=1 PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest -p no:cacheprovider \
    --rootdir "$HS_REPO" -c "$HS_REPO/setup.cfg" "$HS_REPO/tests/installed" "$@"
