"""The rig's two-node swarm (rig/swarm.sh) for the Swarm test modules."""

import subprocess

import docker

from hubrig import REPO


def running_swarm():
    """Start the swarm; yields ``(env, {"manager": client, "worker": client})``, then stops it."""
    out = subprocess.run(["bash", str(REPO / "rig" / "swarm.sh"), "start"], check=True,
                         capture_output=True, text=True).stdout
    env = dict(line.split("=", 1) for line in out.split() if "=" in line)
    clients = {name: docker.APIClient(base_url=env[f"HS_SWARM_{name.upper()}"], version="auto")
               for name in ("manager", "worker")}
    yield env, clients
    subprocess.run(["bash", str(REPO / "rig" / "swarm.sh"), "stop"], check=True)
