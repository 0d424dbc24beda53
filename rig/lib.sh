# Shared settings for the test rig and the demo hub. Source, do not run.
# Everything the rig creates lives under $HS_RIG_STATE (outside the work tree,
# so built images survive between runs and a fresh clone reuses them).
set -euo pipefail
HS_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HS_RIG_STATE="${HS_RIG_STATE:-/var/lib/hardened-spawner-rig}"
HS_RIG_RUN="${HS_RIG_RUN:-/run/hardened-spawner-rig}"
HS_BASE_IMAGE="${HS_BASE_IMAGE:-hardened-spawner/debian-base:bookworm}"
HS_SINGLEUSER_IMAGE="${HS_SINGLEUSER_IMAGE:-hardened-spawner/singleuser:local}"
HS_PYTHON="${HS_PYTHON:-python3}"

# Each line says the time and the seconds since the script started, so a CI log shows where the time goes.
log() { printf '[rig %s +%ss] %s\n' "$(date -u +%H:%M:%S)" "$SECONDS" "$*" >&2; }

# The Debian mirror apt on this machine already uses (for debootstrap).
debian_mirror() {
    local m
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | grep -E '^(deb |URIs:)' | grep -oE 'https?://[^ ]+' \
        | grep -v -e security -e nodesource | head -n1 || true)
    echo "${m:-http://deb.debian.org/debian}"
}
