"""network_firewall at hub start (validate-config runs the same checks): refused, with the reason, when the
hub could not keep the chain, as a real process sees it (no iptables-restore on PATH)."""

import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).with_name("hardened-spawner"))
ON = 'c.HardenedDockerSpawner.network_per_user = True\nc.HardenedDockerSpawner.network_firewall = "iptables-raw"\n'


def validate(tmp_path, text, env=None):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(text)
    return subprocess.run([CLI, "validate-config", "--config", str(config)],
                          capture_output=True, text=True, env=env)


def test_the_firewall_without_per_user_networks_is_refused(tmp_path):
    done = validate(tmp_path, 'c.HardenedDockerSpawner.network_firewall = "iptables-raw"\n')
    assert done.returncode == 1
    assert done.stdout == ("HardenedDockerSpawner.network_firewall: the firewall keeps per-user bridge networks "
                           "apart: set network_per_user = True (Swarm overlays are not bridges), or unset it\n")


def test_a_hub_without_iptables_restore_is_refused(tmp_path):
    done = validate(tmp_path, ON, env={"PATH": str(Path(CLI).parent)})
    assert done.returncode == 1
    assert done.stdout == ("HardenedDockerSpawner.network_firewall: iptables-restore is not installed (Debian: "
                           "apt-get install iptables); or unset it and run 'hardened-spawner firewall --watch' "
                           "on the host\n")

