"""Spawn latency: plain DockerSpawner vs HardenedDockerSpawner, same image, same daemon.

Starts two real hubs side by side and interleaves spawns between them (after
warm-up spawns), so both see the same daemon load. Each sample is the time
from the spawn request to the server answering through the proxy (the
progress stream's "ready"), then the server is stopped. The hardened hub runs
every feature: image admission, an SSH key in the file key store (and the
SSH gateway service), two profiles. Its audit log gives each spawn's phase
durations (the phase table in hardened_spawner/spawner/phases.py), reported
as medians, and so are the phases inside its container, from the container's
log with Docker's timestamps (:func:`container_phases`): the container's start
to hs-entrypoint's first line, to sshd listening, to the notebook server
listening. The median ratio comes with a bootstrap 95% confidence interval.
Run under the rig's daemon:

    DOCKER_HOST=unix:///run/hardened-spawner-rig/main/docker.sock \
        python3 benchmarks/spawn_latency.py --spawns 30
"""

import argparse
import datetime
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncssh
import docker

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
c.Spawner.http_timeout = 300  # a loaded machine: a slow start is a sample, not a failure
"""
HARDENED = """
c.Spawner.http_timeout = 300
c.HardenedDockerSpawner.profiles = [
    {"slug": "small", "display_name": "Small", "cpu_limit": 1.0, "mem_limit": "2G", "default": True},
    {"slug": "large", "display_name": "Large", "cpu_limit": 2.0, "mem_limit": "4G"},
]
"""
USER = "bench-{}"


CONTAINER_MARKS = {  # phase: the container log line that ends it
    "entrypoint_started": "hs-entrypoint: started",
    "sshd_listening": "Server listening on ",
    "server_listening": " is running at:",
}


def _when(stamp):
    """Seconds since the epoch of a Docker log timestamp (RFC 3339, nanoseconds)."""
    day, _, rest = stamp.partition("T")
    clock, _, fraction = rest.rstrip("Z").partition(".")
    whole = datetime.datetime.fromisoformat(f"{day}T{clock}+00:00").timestamp()
    return whole + float(f"0.{fraction or 0}")


def container_phases(started_at, log):
    """``{phase: seconds}`` of one start: from the container's start (``State.StartedAt``) to
    hs-entrypoint's first line, then to sshd listening and to the notebook server listening,
    each from the entrypoint's line (``log``: ``docker logs --timestamps``). A phase whose line
    is missing (sshd not started) is left out."""
    seen = {}
    for line in log.splitlines():
        stamp, _, text = line.partition(" ")
        for phase, mark in CONTAINER_MARKS.items():
            if phase not in seen and mark in text:
                seen[phase] = _when(stamp)
    if "entrypoint_started" not in seen:
        return {}
    entry = seen.pop("entrypoint_started")
    return {"entrypoint_started": round(entry - _when(started_at), 4),
            **{phase: round(t - entry, 4) for phase, t in seen.items()}}


def read_container_phases(user):
    """The in-container phases of ``user``'s running server (the hub's label finds it)."""
    client = docker.APIClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    (container,) = client.containers(filters={"label": f"hardened-spawner.owner={user}"})
    started = client.inspect_container(container["Id"])["State"]["StartedAt"]
    return container_phases(started, client.logs(container["Id"], timestamps=True).decode(errors="replace"))


def one_spawn(hub, user, phases=None):
    """Seconds from the spawn request to the server answering; with ``phases`` (a list), appends the
    server's in-container phases before it is stopped."""
    start = time.perf_counter()
    events = hub.spawn_and_wait(user)
    elapsed = time.perf_counter() - start
    if not events or not events[-1].get("ready"):
        raise RuntimeError(f"spawn of {user} failed: {events[-1:]}")
    if phases is not None:
        phases.append(read_container_phases(user))
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
        inside = []  # the hardened servers' in-container phases
        try:
            for _ in range(args.warmup):  # the first spawn creates the home volume and reads the image
                for name, hub in hubs.items():
                    one_spawn(hub, USER.format(name))
            skip = len([e for e in hubs["hardened"].audit() if e["event"] == "spawn"])
            for i in range(args.spawns):
                for name in (list(hubs) if i % 2 == 0 else list(reversed(hubs))):
                    phases = inside if name == "hardened" else None
                    samples[name].append(one_spawn(hubs[name], USER.format(name), phases))
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
        "hardened_container_phase_medians_s": {
            p: round(statistics.median(ph[p] for ph in inside if p in ph), 4)
            for p in CONTAINER_MARKS if any(p in ph for ph in inside)},
        "hardened_container_phase_samples": len([ph for ph in inside if ph]),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
