#!/usr/bin/env bash
# Build the admission test images (tests/images/Dockerfile) on the daemon at
# $DOCKER_HOST: hardened-spawner/adm-<stage>:test for every stage, plus
# hardened-spawner/adm-compliant:latest. Images are reused while
# tests/images/ and the single-user image are unchanged.
source "$(dirname "$0")/lib.sh"

ctx="$HS_REPO/tests/images"
stages=(compliant root privkey sudo sshroot channel eolpython denied pip lock secret setuid symlinkssh cve noreport
        storm)
base_id="$(docker image inspect -f '{{.Id}}' "$HS_SINGLEUSER_IMAGE")"
inputs="$( (cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum; echo "$base_id") | sha256sum | cut -c1-12)"

for stage in "${stages[@]}"; do
    tag="hardened-spawner/adm-$stage:test"
    if [ "$(docker image inspect -f '{{index .Config.Labels "hardened-spawner.test-inputs"}}' "$tag" 2>/dev/null)" != "$inputs" ]; then
        log "docker build $tag"
        docker build -q --build-arg BASE="$HS_SINGLEUSER_IMAGE" --label "hardened-spawner.test-inputs=$inputs" \
            --target "$stage" -t "$tag" "$ctx" >/dev/null 2>"$HS_RIG_STATE/test-images.log" \
            || { cat "$HS_RIG_STATE/test-images.log" >&2; exit 1; }
    fi
done
docker tag hardened-spawner/adm-compliant:test hardened-spawner/adm-compliant:latest
log "admission test images ready (${#stages[@]} stages)"
