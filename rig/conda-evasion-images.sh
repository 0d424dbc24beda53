#!/usr/bin/env bash
# The conda-policy evasion images (tests/images/conda-evasion.Dockerfile), on top of the real
# conda images rig/conda-images.sh builds: hardened-spawner/conda-evade-<stage>:test. Reused
# while the Dockerfile and the images they start from are unchanged.
source "$(dirname "$0")/lib.sh"

file="$HS_REPO/tests/images/conda-evasion.Dockerfile"
stages=(bare claimedfiles pth prefix shadow loaderenv usersite forgedchannel forgedhash modified modifiedext modifiedscript relinked forgedpaths nestedpkg nestedext nestedpyc)
inputs="$( (cat "$file" "$0" | sha256sum; docker image inspect -f '{{.Id}}' hardened-spawner/conda-real:test \
    hardened-spawner/conda-realenvs:test) | sha256sum | cut -c1-12)"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
# the nestedext stage's tornado/web.abi3.so: a real shared object whose constructor runs when the loader maps it
# (no Python headers needed; Python then finds no PyInit_web, after the code ran)
cc -shared -fPIC -o "$ctx/web.abi3.so" -x c - <<'C'
#include <unistd.h>
__attribute__((constructor)) static void ran(void) { write(2, "nested extension ran\n", 21); }
C
for stage in "${stages[@]}"; do
    tag="hardened-spawner/conda-evade-$stage:test"
    if [ "$(docker image inspect -f '{{index .Config.Labels "hardened-spawner.test-inputs"}}' "$tag" 2>/dev/null)" != "$inputs" ]; then
        log "docker build $tag"
        docker build -q --label "hardened-spawner.test-inputs=$inputs" -f "$file" --target "$stage" -t "$tag" "$ctx" \
            >/dev/null 2>"$ctx/build.log" || { cat "$ctx/build.log" >&2; exit 1; }
    fi
done
log "conda evasion images ready (${#stages[@]} stages)"
