"""Spawn latency: plain DockerSpawner vs HardenedDockerSpawner, same image, same daemon.

Starts two real hubs side by side and interleaves spawns between them (after
warm-up spawns), so both see the same daemon load. Each sample is the time
from the spawn request to the server answering through the proxy (the
progress stream's "ready"), then the server is stopped. The hardened hub runs
every feature: image admission, an SSH key in the file key store (and the
SSH gateway service), two profiles. Its audit log gives each spawn's phase
durations (the phase table in hardened_spawner/spawner/phases.py), reported
as medians. The median ratio comes with a bootstrap 95% confidence interval.
Run under the rig's daemon:

    DOCKER_HOST=unix:///run/hardened-spawner-rig/main/docker.sock \
        python3 benchmarks/spawn_latency.py --spawns 30
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncssh

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
HARDENED = """
c.HardenedDockerSpawner.profiles = [
    {"slug": "small", "display_name": "Small", "cpu_limit": 1.0, "mem_limit": "2G", "default": True},
    {"slug": "large", "display_name": "Large", "cpu_limit": 2.0, "mem_limit": "4G"},
]
"""
USER = "bench-{}"


def one_spawn(hub, user):
    start = time.perf_counter()
    events = hub.spawn_and_wait(user)
    elapsed = time.perf_counter() - start
    if not events or not events[-1].get("ready"):
        raise RuntimeError(f"spawn of {user} failed: {events[-1:]}")
    hub.stop_server(user)
    return elapsed


def bootstrap_ratio(plain, hardened, rounds=10_000, seed=1):
    """95% confidence interval of median(hardened) / median(plain), by resampling both."""
    rng = random.Random(seed)
    ratios = sorted(
        statistics.median(rng.choices(hardened, k=len(hardened))) / statistics.median(rng.choices(plain, k=len(plain)))
        for _ in range(rounds))
    return ratios[int(0.025 * rounds)], ratios[int(0.975 * rounds)]


def add_key(state, user):
    directory = state / "ssh-keys" / user
    directory.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    (directory / "authorized_keys").write_bytes(key.export_public_key())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spawns", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hardened_state = Path(tmp) / "hardened"
        add_key(hardened_state, USER.format("hardened"))
        hubs = {"plain": Hub(Path(tmp) / "plain", PLAIN).start(), "hardened": Hub(hardened_state, HARDENED).start()}
        samples = {name: [] for name in hubs}
        try:
            for _ in range(args.warmup):  # the first spawn creates the home volume and reads the image
                for name, hub in hubs.items():
                    one_spawn(hub, USER.format(name))
            skip = len([e for e in hubs["hardened"].audit() if e["event"] == "spawn"])
            for i in range(args.spawns):
                for name in (list(hubs) if i % 2 == 0 else list(reversed(hubs))):
                    samples[name].append(one_spawn(hubs[name], USER.format(name)))
            spawns = [e for e in hubs["hardened"].audit() if e["event"] == "spawn"][skip:]
        finally:
            for hub in hubs.values():
                hub.stop()
    medians = {name: statistics.median(s) for name, s in samples.items()}
    phases = {p: round(statistics.median(e["phases"].get(p, 0.0) for e in spawns), 4) for p in spawns[0]["phases"]}
    low, high = bootstrap_ratio(samples["plain"], samples["hardened"])
    result = {
        "spawns": args.spawns,
        "load_1min": round(os.getloadavg()[0], 2),
        "median_s": {k: round(v, 3) for k, v in medians.items()},
        "min_s": {k: round(min(s), 3) for k, s in samples.items()},
        "max_s": {k: round(max(s), 3) for k, s in samples.items()},
        "ratio_hardened_over_plain": round(medians["hardened"] / medians["plain"], 3),
        "ratio_95ci": [round(low, 3), round(high, 3)],
        "hardened_phase_medians_s": phases,
        "hardened_start_median_s": round(statistics.median(sum(e["phases"].values()) for e in spawns), 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
