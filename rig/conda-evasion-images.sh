#!/usr/bin/env bash
# The conda-policy evasion images (tests/images/conda-evasion.Dockerfile), on top of the real
# conda images rig/conda-images.sh builds: hardened-spawner/conda-evade-<stage>:test. Reused
# while the Dockerfile and the images they start from are unchanged.
source "$(dirname "$0")/lib.sh"

file="$HS_REPO/tests/images/conda-evasion.Dockerfile"
stages=(bare claimedfiles pth prefix shadow loaderenv usersite forgedchannel forgedhash modified modifiedext modifiedscript relinked forgedpaths)
inputs="$( (sha256sum "$file"; docker image inspect -f '{{.Id}}' hardened-spawner/conda-real:test \
    hardened-spawner/conda-realenvs:test) | sha256sum | cut -c1-12)"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
for stage in "${stages[@]}"; do
    tag="hardened-spawner/conda-evade-$stage:test"
    if [ "$(docker image inspect -f '{{index .Config.Labels "hardened-spawner.test-inputs"}}' "$tag" 2>/dev/null)" != "$inputs" ]; then
        log "docker build $tag"
        docker build -q --label "hardened-spawner.test-inputs=$inputs" -f "$file" --target "$stage" -t "$tag" "$ctx" \
            >/dev/null 2>"$ctx/build.log" || { cat "$ctx/build.log" >&2; exit 1; }
    fi
done
log "conda evasion images ready (${#stages[@]} stages)"
