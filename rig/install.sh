#!/usr/bin/env bash
# Install what the rig needs and is missing: Debian packages, npm's
# configurable-http-proxy and the Python package with its test extras.
source "$(dirname "$0")/lib.sh"

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v ssh >/dev/null || need_apt+=(openssh-client)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)  # runs deploy/ (tests/deploy)
command -v skopeo >/dev/null || need_apt+=(skopeo)    # pushes the signature artifacts in tests/signrig.py
command -v openssl >/dev/null || need_apt+=(openssl)  # makes the test keys and signatures
command -v mkfs.btrfs >/dev/null || need_apt+=(btrfs-progs)  # a btrfs data root enforces storage_opt size (tests/integration/test_disk_bounds.py)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v chromium >/dev/null || need_apt+=(chromium)  # Debian's, driven by Playwright in tests/e2e
command -v certutil >/dev/null || need_apt+=(libnss3-tools)  # the test CA in Chromium's NSS store (tests/integration/test_deployment.py)
command -v cc >/dev/null || need_apt+=(gcc libc6-dev)  # compiles the nested extension module of an evasion image (rig/conda-evasion-images.sh)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! command -v configurable-http-proxy >/dev/null; then
    log "npm install -g configurable-http-proxy"
    npm install -g --silent configurable-http-proxy@5 >/dev/null 2>&1
fi
# (Re)install when a test dependency is missing or the installed package is
# another checkout's: the hub subprocesses import it from the install.
installed="$(cd / && "$HS_PYTHON" -c 'import os, hardened_spawner, pytest, xdist, hypothesis, oidc_provider_mock, playwright, asyncssh, hvac, ssh_audit, rattler_build, oras, sigstore, cyclonedx, debian, cvss, jsonschema, build, wheel; print(os.path.dirname(os.path.dirname(hardened_spawner.__file__)))' 2>/dev/null || true)"
# The install's metadata (entry points: spawners, key stores) is written from setup.cfg at install
# time, so a changed setup.cfg or pyproject.toml in the same checkout reinstalls too.
stamp="$HS_REPO/artifacts/install-stamp"
metadata="$(cat "$HS_REPO/setup.cfg" "$HS_REPO/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$installed" != "$HS_REPO" ] || [ "${HS_REINSTALL:-0}" = 1 ] \
        || [ "$(cat "$stamp" 2>/dev/null)" != "$metadata" ]; then
    log "pip install -e .[test,docs]"
    "$HS_PYTHON" -m pip install -q --disable-pip-version-check -e "$HS_REPO[test,docs]" 2>&1 \
        | grep -v -e "^WARNING: Location" -e "Running pip as the 'root'" >&2 || true
    mkdir -p "$HS_REPO/artifacts" && echo "$metadata" > "$stamp"
fi
