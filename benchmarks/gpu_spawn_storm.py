"""Spawn storm: N concurrent GPU spawns on a real hub, time to all ready, hub API latency meanwhile.

One hub with as many GPU ids as spawns (the rig's stand-in NVIDIA hook makes
Docker's device-request path real), one 1-GPU profile. All spawn requests go
out at once; a prober thread calls ``GET /hub/api/users/<name>`` every 50 ms
during the storm and records each latency. Run under the rig's daemon:

    DOCKER_HOST=unix:///run/hardened-spawner-rig/main/docker.sock \\
        python3 benchmarks/gpu_spawn_storm.py --spawns 20
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hubrig import Hub  # noqa: E402

CONFIG = """
c.HardenedDockerSpawner.gpu_ids = [str(i) for i in range({n})]
c.HardenedDockerSpawner.profiles = [
    {{'slug': 'gpu', 'display_name': 'GPU', 'mem_limit': '512M', 'cpu_limit': 0.5, 'gpus': 1, 'default': True}},
]
c.HardenedDockerSpawner.start_timeout = 300
c.HardenedDockerSpawner.http_timeout = 300
"""


def percentile(samples, q):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def spawn(hub, user):
    start = time.perf_counter()
    events = hub.spawn_and_wait(user, timeout=600)
    return time.perf_counter() - start, bool(events and events[-1].get("ready"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spawns", type=int, default=20)
    args = parser.parse_args()
    users = [f"gpu-bench-{i:02d}" for i in range(args.spawns)]
    client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    with tempfile.TemporaryDirectory() as tmp:
        hub = Hub(Path(tmp) / "hub", CONFIG.format(n=args.spawns)).start()
        latencies, stop = [], threading.Event()

        def probe():
            while not stop.is_set():
                t = time.perf_counter()
                r = hub.api("GET", f"/users/{users[0]}")
                latencies.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
                stop.wait(0.05)

        try:
            for user in users:
                hub.ensure_user(user)
            prober = threading.Thread(target=probe)
            start = time.perf_counter()
            prober.start()
            with ThreadPoolExecutor(len(users)) as pool:
                results = list(pool.map(lambda u: spawn(hub, u), users))
            all_ready = time.perf_counter() - start
            stop.set()
            prober.join()
            labels = [client.containers(filters={"label": f"hardened-spawner.owner={u}"})[0]["Labels"]
                      for u in users]
            gpus = [lab.get("hardened-spawner.gpus") for lab in labels]
        finally:
            stop.set()
            hub.stop()
            for user in users:  # the hub removes them on shutdown; anything left goes here
                for c in client.containers(all=True, filters={"label": f"hardened-spawner.owner={user}"}):
                    try:
                        client.remove_container(c["Id"], force=True, v=True)
                    except docker.errors.APIError as e:
                        if e.status_code not in (404, 409):  # gone, or being removed already
                            raise
                try:  # the shipped config's named home volume
                    client.remove_volume("jupyterhub-user-" + user.replace("-", "-2d"))
                except docker.errors.APIError:
                    pass  # absent, or still in use by a container being removed
    times = [t for t, _ in results]
    print(json.dumps({
        "load_average_1m_after": round(os.getloadavg()[0], 1),
        "spawns": args.spawns,
        "ready": sum(ok for _, ok in results),
        "distinct_gpus": len(set(gpus)),
        "all_ready_s": round(all_ready, 1),
        "spawn_s_median": round(statistics.median(times), 1),
        "spawn_s_max": round(max(times), 1),
        "api_probes": len(latencies),
        "api_ms_p50": round(percentile(latencies, 50), 1),
        "api_ms_p99": round(percentile(latencies, 99), 1),
        "api_ms_max": round(max(latencies), 1),
    }))


if __name__ == "__main__":
    main()
