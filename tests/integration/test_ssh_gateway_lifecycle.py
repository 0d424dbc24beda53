"""The gateway service lives and dies with its hub, even when the hub is killed hard."""

import os
import signal
import time
from pathlib import Path

import pytest
from hubrig import Hub
from sshrig import wait_port

pytestmark = [pytest.mark.hub]


def gateway_pids(config):
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hardened_spawner.ssh.gateway" in cmdline and str(config).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def test_a_hub_killed_hard_takes_its_gateway_along(tmp_path):
    hub = Hub(tmp_path / "hub")
    try:
        hub.start()
        wait_port(int(hub.env["HS_SSH_GATEWAY_PORT"]))
        assert len(gateway_pids(hub.config)) == 1
        hub.kill()  # SIGKILL: the hub cannot stop its services, which run in their own session
        deadline = time.monotonic() + 15
        while gateway_pids(hub.config) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert gateway_pids(hub.config) == []
        assert "the hub (pid" in hub.log() and "is gone: stopping the SSH gateway" in hub.log()
    finally:
        hub.stop()
        for leftover in gateway_pids(hub.config):  # only this test's own gateway
            os.kill(leftover, signal.SIGKILL)
