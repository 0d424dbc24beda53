#!/usr/bin/env bash
# Build the images the rig needs on the daemon at $DOCKER_HOST, reusing any
# that already exist:
#   1. $HS_BASE_IMAGE: Debian bookworm minbase from debootstrap + docker import
#      (no registry is reachable, so the base cannot be pulled);
#   2. a host-side wheelhouse for Python 3.11.2 (bookworm's python3), the way
#      an air-gapped site installs Python packages into images;
#   3. $HS_SINGLEUSER_IMAGE: docker/Dockerfile built on that base.
# HS_REBUILD=1 rebuilds the single-user image.
source "$(dirname "$0")/lib.sh"

if ! docker image inspect "$HS_BASE_IMAGE" >/dev/null 2>&1; then
    root="$HS_RIG_STATE/debootstrap-bookworm"
    if [ ! -x "$root/usr/bin/apt-get" ]; then
        rm -rf "$root"; mkdir -p "$root"
        mirror="$(debian_mirror)"
        log "debootstrap --variant=minbase bookworm from $mirror (a few minutes)"
        debootstrap --variant=minbase bookworm "$root" "$mirror" >"$HS_RIG_STATE/debootstrap.log" 2>&1 \
            || { tail -n 30 "$HS_RIG_STATE/debootstrap.log" >&2; exit 1; }
        # apt inside the image uses the same mirror as the host.
        echo "deb $mirror bookworm main" >"$root/etc/apt/sources.list"
        rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
    fi
    log "docker import -> $HS_BASE_IMAGE"
    tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' - "$HS_BASE_IMAGE" >/dev/null
fi

wheelhouse="$HS_RIG_STATE/wheelhouse"
reqs="$HS_REPO/docker/requirements.txt"
stamp="$wheelhouse/.requirements.sha256"
want="$(sha256sum "$reqs" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "pip download the single-user wheelhouse (python 3.11.2)"
    rm -rf "$wheelhouse"; mkdir -p "$wheelhouse"
    "$HS_PYTHON" -m pip download -q --disable-pip-version-check --dest "$wheelhouse" \
        --python-version 3.11.2 --only-binary=:all: -r "$reqs" 2>&1 \
        | grep -v -e "^WARNING: Location" >&2 || true
    ls "$wheelhouse"/*.whl >/dev/null
    echo "$want" >"$stamp"
fi

# The image tag carries a hash of its inputs, so an edited Dockerfile
# rebuilds and an unchanged one is reused.
inputs="$( (cd "$HS_REPO/docker" && find . -type f -print0 | sort -z | xargs -0 sha256sum; echo "$want") | sha256sum | cut -c1-12)"
if [ "${HS_REBUILD:-0}" = 1 ] || ! docker image inspect "$HS_SINGLEUSER_IMAGE-$inputs" >/dev/null 2>&1; then
    ctx="$(mktemp -d)"; trap 'rm -rf "$ctx"' EXIT
    cp -a "$HS_REPO/docker/." "$ctx/"
    mkdir -p "$ctx/wheelhouse"; cp "$wheelhouse"/*.whl "$ctx/wheelhouse/"
    log "docker build $HS_SINGLEUSER_IMAGE on $HS_BASE_IMAGE"
    # --network host: a daemon other than main has a bridge without NAT, so apt
    # inside the build reaches the Debian mirror only through the host's network.
    docker build -q --network host --build-arg BASE_IMAGE="$HS_BASE_IMAGE" --build-arg PIP_OFFLINE=1 \
        -t "$HS_SINGLEUSER_IMAGE-$inputs" "$ctx" >/dev/null
fi
docker tag "$HS_SINGLEUSER_IMAGE-$inputs" "$HS_SINGLEUSER_IMAGE"
log "images ready: $HS_BASE_IMAGE, $HS_SINGLEUSER_IMAGE"
