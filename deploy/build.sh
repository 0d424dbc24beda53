#!/usr/bin/env bash
# Build the deployment's three images on the daemon at $DOCKER_HOST (docs/deployment.md):
#   $HUB_IMAGE       the hub, from the wheel built from this checkout (or $HS_WHEEL)
#   $POSTGRES_IMAGE  Debian's PostgreSQL 15
#   $NGINX_IMAGE     Debian's nginx with the stream module
# BASE_IMAGE   a Debian bookworm image (default: what rig/images.sh makes with debootstrap;
#              from a registry: debian:bookworm-slim@sha256:<the digest you read there>)
# WHEELHOUSE   Python 3.11 wheels of the hub's dependencies; default: pip downloads them
#              (from the index pip is configured with) into deploy/.build/wheelhouse
# NODE, CHP    node (>= 20) and configurable-http-proxy's installed npm package to copy in
#              (default: the ones on this host, `npm install -g configurable-http-proxy@5`)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; repo="$(dirname "$here")"
python="${HS_PYTHON:-python3}"
base="${BASE_IMAGE:-hardened-spawner/debian-base:bookworm}"
hub_image="${HUB_IMAGE:-hardened-spawner/hub:local}"
postgres_image="${POSTGRES_IMAGE:-hardened-spawner/postgres:15}"
nginx_image="${NGINX_IMAGE:-hardened-spawner/nginx:local}"
node="${NODE:-$(command -v node)}"
chp="${CHP:-$(npm root -g)/configurable-http-proxy}"
log() { printf '[deploy] %s\n' "$*" >&2; }

build="$here/.build"; ctx="$build/hub"
rm -rf "$ctx"; mkdir -p "$ctx/wheelhouse"
if [ -n "${HS_WHEEL:-}" ]; then
    cp "$HS_WHEEL" "$ctx/wheelhouse/"
else
    log "building the hardened_spawner wheel"
    "$python" -m build --no-isolation --wheel --outdir "$ctx/wheelhouse" "$repo" >"$build/wheel.log" 2>&1 \
        || { tail -n 30 "$build/wheel.log" >&2; exit 1; }
fi
wheel="$(ls "$ctx"/wheelhouse/hardened_spawner-*.whl)"
wheelhouse="${WHEELHOUSE:-$build/wheelhouse}"
if [ -z "${WHEELHOUSE:-}" ]; then
    log "pip download the hub's dependencies (Python 3.11.2 wheels) into $wheelhouse"
    mkdir -p "$wheelhouse"
    "$python" -m pip download -q --disable-pip-version-check --dest "$wheelhouse" --python-version 3.11.2 \
        --only-binary=:all: "$wheel" "psycopg[binary]" 2>&1 | grep -v -e "^WARNING: Location" >&2 || true
fi
find "$wheelhouse" -maxdepth 1 -name '*.whl' ! -name 'hardened_spawner-*' -exec cp {} "$ctx/wheelhouse/" \;
cp -a "$here/hub/Dockerfile" "$here/hub/entrypoint.sh" "$ctx/"
cp "$node" "$ctx/node"; cp -a "$chp" "$ctx/configurable-http-proxy"
version="$(basename "$wheel" | cut -d- -f2)"
log "docker build $hub_image (hardened_spawner $version) on $base"
# --network host: apt inside the build reaches the Debian mirror the way the host does
docker build -q --network host --build-arg BASE_IMAGE="$base" \
    --label org.opencontainers.image.version="$version" --label org.opencontainers.image.base.name="$base" \
    -t "$hub_image" "$ctx" >/dev/null
for pair in "postgres:$postgres_image" "nginx:$nginx_image"; do
    dir="${pair%%:*}"; image="${pair#*:}"
    log "docker build $image on $base"
    docker build -q --network host --build-arg BASE_IMAGE="$base" \
        --label org.opencontainers.image.base.name="$base" -t "$image" "$here/$dir" >/dev/null
done
log "images ready: $hub_image, $postgres_image, $nginx_image"
