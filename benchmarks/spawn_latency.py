"""Spawn latency: plain DockerSpawner vs HardenedDockerSpawner, same image, same daemon.

Starts two real hubs side by side and alternates spawns between them, so both
see the same daemon load. Each sample is the time from the spawn request to
the server answering through the proxy (the progress stream's "ready"), then
the server is stopped. Run under the rig's daemon:

    DOCKER_HOST=unix:///run/hardened-spawner-rig/main/docker.sock \
        python3 benchmarks/spawn_latency.py --spawns 10
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hubrig import IMAGE, Hub  # noqa: E402

PLAIN = f"""
c.JupyterHub.spawner_class = "docker"
c.DockerSpawner.image = {IMAGE!r}
c.DockerSpawner.remove = True
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.network_name = "bridge"
c.DockerSpawner.notebook_dir = "/home/jovyan"
c.DockerSpawner.volumes = {{"jupyterhub-user-{{username}}": "/home/jovyan"}}
c.DockerSpawner.mem_limit = "2G"
c.DockerSpawner.cpu_limit = 1.0
"""


def one_spawn(hub, user):
    start = time.perf_counter()
    events = hub.spawn_and_wait(user)
    elapsed = time.perf_counter() - start
    if not events or not events[-1].get("ready"):
        raise RuntimeError(f"spawn of {user} failed: {events[-1:]}")
    hub.stop_server(user)
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spawns", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hubs = {
            "plain": Hub(Path(tmp) / "plain", PLAIN).start(),
            "hardened": Hub(Path(tmp) / "hardened").start(),
        }
        samples = {name: [] for name in hubs}
        try:
            for name, hub in hubs.items():  # warm-up: first spawn creates the home volume
                one_spawn(hub, f"bench-{name}")
            for i in range(args.spawns):
                order = list(hubs) if i % 2 == 0 else list(reversed(hubs))
                for name in order:
                    samples[name].append(one_spawn(hubs[name], f"bench-{name}"))
        finally:
            for hub in hubs.values():
                hub.stop()
    medians = {name: statistics.median(s) for name, s in samples.items()}
    result = {
        "spawns": args.spawns,
        "median_s": {k: round(v, 3) for k, v in medians.items()},
        "min_s": {k: round(min(s), 3) for k, s in samples.items()},
        "max_s": {k: round(max(s), 3) for k, s in samples.items()},
        "ratio_hardened_over_plain": round(medians["hardened"] / medians["plain"], 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
