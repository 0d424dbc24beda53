#!/usr/bin/env bash
# Conda test images made by a real installer (tests/images/conda.Dockerfile), and
# images shaped like common single-user images (tests/images/common.Dockerfile).
#
# 1. rig/conda_channel.py build: a private channel (conda-forge, evil-channel) of
#    real .conda packages from the single-user wheelhouse, indexed with py-rattler;
# 2. the channel is served over HTTP on loopback, as a private mirror would be;
# 3. rig/conda_channel.py install: py-rattler solves and installs environments
#    for /opt/conda (and /opt/conda/envs/*) into staging directories;
# 4. docker build copies them into images hardened-spawner/conda-<stage>:test and
#    hardened-spawner/common-<shape>:test. The channel URL is the label
#    hardened-spawner.conda-mirror, so tests can declare the mirror.
# Everything is reused while its inputs are unchanged.
source "$(dirname "$0")/lib.sh"

wheelhouse="$HS_RIG_STATE/wheelhouse"
ctx_src="$HS_REPO/tests/images"
base_id="$(docker image inspect -f '{{.Id}}' "$HS_SINGLEUSER_IMAGE")"
# Contents only, never paths: a clone elsewhere (CI's fresh clone) reuses what another built.
channel_inputs="$( (sha256sum < "$HS_REPO/rig/conda_channel.py"; ls "$wheelhouse") | sha256sum | cut -c1-12)"
root="$HS_RIG_STATE/conda-$channel_inputs"
inputs="$( (echo "$channel_inputs"; cd "$ctx_src" && sha256sum conda.Dockerfile common.Dockerfile; echo "$base_id") \
    | sha256sum | cut -c1-12)"
conda_stages=(real realenvs realpip)
common_shapes=(official datascience cuda cudaroot)

current() {  # every image built from these inputs?
    local s
    for s in "${conda_stages[@]}"; do
        [ "$(docker image inspect -f '{{index .Config.Labels "hardened-spawner.test-inputs"}}' "hardened-spawner/conda-$s:test" 2>/dev/null)" = "$inputs" ] || return 1
    done
    for s in "${common_shapes[@]}"; do
        [ "$(docker image inspect -f '{{index .Config.Labels "hardened-spawner.test-inputs"}}' "hardened-spawner/common-$s:test" 2>/dev/null)" = "$inputs" ] || return 1
    done
}
if current; then log "conda and common-shape test images ready"; exit 0; fi

if [ ! -f "$root/channels/conda-forge/noarch/repodata.json" ]; then
    log "building the private conda channel (py-rattler-build, py-rattler index)"
    rm -rf "$root"; mkdir -p "$root"
    "$HS_PYTHON" "$HS_REPO/rig/conda_channel.py" build "$root/channels" "$wheelhouse" >"$root/build.log" 2>&1 \
        || { tail -n 20 "$root/build.log" >&2; exit 1; }
fi

port="$("$HS_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
"$HS_PYTHON" -m http.server --bind 127.0.0.1 "$port" --directory "$root/channels" >"$root/http.log" 2>&1 &
server=$!
ctx="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$ctx"' EXIT
for _ in $(seq 1 50); do curl -sf "$url/conda-forge/noarch/repodata.json" >/dev/null && break; sleep 0.1; done

install() {  # install NAME PREFIX SPEC...: solve and install into $ctx/envs/NAME
    local name="$1" prefix="$2"; shift 2
    "$HS_PYTHON" "$HS_REPO/rig/conda_channel.py" install "$url" "$prefix" "$ctx/envs/$name" "$@" \
        --export "$ctx/exports/$name" >"$root/install-$name.log" 2>&1 || { cat "$root/install-$name.log" >&2; exit 1; }
    rm -f "$ctx/envs/$name/CACHEDIR.TAG"
}
log "installing conda environments from $url (py-rattler solve + install)"
mapfile -t names < <(ls "$wheelhouse" | sed -E 's/^([^-]+)-.*/\1/' | tr '_.' '--' | tr 'A-Z' 'a-z' | sort -u)
install base /opt/conda "python ==3.11.2" "${names[@]}"
install analysis /opt/conda/envs/analysis "python ==3.11.2" six python-dateutil packaging
install legacy /opt/conda/envs/legacy "python ==3.9.18"
install crypto /opt/conda/envs/crypto "python ==3.11.2" pycrypto
install vendor /opt/conda/envs/vendor "python ==3.11.2" hs-telemetry
cp "$ctx_src/conda.Dockerfile" "$ctx_src/common.Dockerfile" "$ctx/"
mkdir -p "$ctx/wheels" && cp "$wheelhouse"/idna-*.whl "$ctx/wheels/"   # what `pip install` puts on top (not in analysis)

for s in "${conda_stages[@]}"; do
    log "docker build hardened-spawner/conda-$s:test"
    docker build -q --build-arg BASE="$HS_SINGLEUSER_IMAGE" --label "hardened-spawner.test-inputs=$inputs" \
        --label "hardened-spawner.conda-mirror=$url" -f "$ctx/conda.Dockerfile" --target "$s" \
        -t "hardened-spawner/conda-$s:test" "$ctx" >/dev/null
done
for s in "${common_shapes[@]}"; do
    log "docker build hardened-spawner/common-$s:test"
    docker build -q --build-arg BASE="$HS_SINGLEUSER_IMAGE" --label "hardened-spawner.test-inputs=$inputs" \
        --label "hardened-spawner.conda-mirror=$url" -f "$ctx/common.Dockerfile" --target "$s" \
        -t "hardened-spawner/common-$s:test" "$ctx" >/dev/null
done
# the lock files exported from the solves, for the tests (admins keep theirs in version control)
mkdir -p "$HS_RIG_STATE/conda-exports" && rm -rf "$HS_RIG_STATE/conda-exports/$inputs" \
    && cp -a "$ctx/exports" "$HS_RIG_STATE/conda-exports/$inputs"
log "conda and common-shape test images ready"
