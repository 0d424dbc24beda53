"""Image admission cost: cold, warm, and a spawn storm on one new image.

cold   the spawner's admission pipeline (AdmissionService.decide, the policy of a
       HardenedDockerSpawner) on an image it has not seen (facts read from the daemon:
       probe containers, archive reads, conda records parsed), with empty caches for each
       sample; with directory listings from the overlay2 layers (admission_read_layers,
       the default where readable) and without (a remote daemon: the archive API only).
warm   the same call again: the decision comes from the cache (a stat of the lock
       file and report directory, no image reads).
files  with ``--verify-files``: the cold samples again with ``conda_verify_files`` on (every
       file the records hash in every environment's site-packages hashed: from the layers, or
       as the archive streams by), beside the same image with it off. ``--verify-channel URL`` (the
       rig's conda-forge channel served over HTTP) adds ``conda_verify_channels`` for the
       image's mirror: records checked against the repodata, and files against each
       package's own ``info/paths.json`` fetched from it.
export a full ``docker export`` of a container of the same image, streamed and discarded:
       what reading every file through the archive API would cost (the ratio in the results).
storm  a real hub; N users spawn one image the hub has not seen, all at once.
       The audit log says how many spawns read the image ("facts": "computed").
       The image is denied (no report in the scan directory), so the storm
       measures admission and not N notebook servers starting.

Run under the rig's daemon after `bash rig/test-images.sh`:

    DOCKER_HOST=unix:///run/hardened-spawner-rig/main/docker.sock \\
        python3 benchmarks/admission_bench.py --cold 5 --warm 50 --storm 20
    python3 benchmarks/admission_bench.py --images hardened-spawner/conda-realenvs:test \\
        --cold 3 --warm 20 --storm 0 --verify-files
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import docker
from traitlets.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hubrig import Hub  # noqa: E402

from hardened_spawner.admission import facts  # noqa: E402
from hardened_spawner.admission.cache import SingleFlight  # noqa: E402
from hardened_spawner.admission.service import AdmissionService  # noqa: E402
from hardened_spawner.spawner import HardenedDockerSpawner  # noqa: E402

COMPLIANT = "hardened-spawner/adm-compliant:test"   # ~700 MB, conda-meta + 275 MB site-packages
SHIPPED = "hardened-spawner/singleuser:local"       # ~700 MB, venv without conda-meta
LARGEST = "hardened-spawner/conda-realenvs:test"    # ~1.3 GB, six environments a real installer wrote
STORM = "hardened-spawner/adm-storm:test"


def spawner(image, read_layers, verify_files=False, verify_channel="", mirror=""):
    config = Config()
    config.HardenedDockerSpawner.admission_read_layers = read_layers
    config.HardenedDockerSpawner.conda_verify_files = verify_files
    if verify_channel:
        config.HardenedDockerSpawner.conda_verify_channels = {"conda-forge": verify_channel}
        config.HardenedDockerSpawner.conda_channel_mirrors = {f"{mirror}/conda-forge": "conda-forge"}
    config.HardenedDockerSpawner.image = image
    config.HardenedDockerSpawner.conda_allowed_channels = ["conda-forge"]
    config.HardenedDockerSpawner.conda_required_packages = ["jupyterhub >=6,<7"]
    config.HardenedDockerSpawner.audit_to_hub_log = False
    s = HardenedDockerSpawner(config=config, user=SimpleNamespace(name="bench"))
    s._events = []
    return s


async def admission_samples(image, cold, warm, read_layers=True, verify_files=False, verify_channel=""):
    """The spawner's admission pipeline (:class:`AdmissionService`) on ``image``: ``cold`` samples
    with empty caches (the image is read), then ``warm`` ones from the cache."""
    client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    info = client.inspect_image(image)
    mirror = (info["Config"].get("Labels") or {}).get("hardened-spawner.conda-mirror", "")
    policy = spawner(image, read_layers, verify_files, verify_channel, mirror).admission_policy()
    executor = ThreadPoolExecutor(facts.THREADS)

    def service():
        return AdmissionService(policy, client, executor, SingleFlight(), SingleFlight(), read_layers=read_layers)

    cold_times, warm_times = [], []
    for _ in range(cold):
        start = time.perf_counter()
        verdict = await service().decide(image, info)
        cold_times.append(time.perf_counter() - start)
    warm_service = service()
    await warm_service.decide(image, info)
    for _ in range(warm):
        start = time.perf_counter()
        await warm_service.decide(image, info)
        warm_times.append(time.perf_counter() - start)
    executor.shutdown()
    size = info["Size"] / 1e6
    return {"image": image, "size_mb": round(size), "admitted": verdict.decision.admitted, "read_layers": read_layers,
            "verify_files": verify_files, "verify_channel": verify_channel, "findings": [f.rule for f in verdict.decision.findings],
            "cold_s": summary(cold_times), "warm_ms": summary([t * 1000 for t in warm_times])}


def export_seconds(image, samples=3):
    """Median time of a full ``docker export`` of a (never started) container of ``image``."""
    client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    times = []
    for _ in range(samples):
        container = client.create_container(image, command=["/x"], network_disabled=True)["Id"]
        try:
            start = time.perf_counter()
            for _chunk in client.export(container, chunk_size=1 << 20):
                pass
            times.append(time.perf_counter() - start)
        finally:
            client.remove_container(container, force=True)
    return summary(times)


def summary(values):
    if not values:
        return None
    ordered = sorted(values)
    return {"n": len(values), "median": round(statistics.median(values), 4), "min": round(ordered[0], 4),
            "max": round(ordered[-1], 4)}


def storm(users):
    with tempfile.TemporaryDirectory() as tmp:
        reports = Path(tmp) / "reports"
        reports.mkdir()
        hub = Hub(Path(tmp) / "hub", f"c.HardenedDockerSpawner.allowed_images = {{'storm': {STORM!r}}}\n"
                                     f"c.HardenedDockerSpawner.scan_report_dir = {str(reports)!r}\n").start()
        try:
            names = [f"adm-bench{i}" for i in range(users)]
            for name in names:
                hub.ensure_user(name)
            barrier = threading.Barrier(users)

            def one(name):
                barrier.wait()
                start = time.perf_counter()
                hub.spawn(name, {"image": "storm"})
                last = hub.progress(name)[-1]
                return time.perf_counter() - start, last.get("failed", False)

            start = time.perf_counter()
            with ThreadPoolExecutor(users) as pool:
                results = list(pool.map(one, names))
            wall = time.perf_counter() - start
            events = [e for e in hub.audit() if e["event"] == "admission"]
        finally:
            hub.stop()
    return {"users": users, "image": STORM, "wall_s": round(wall, 3),
            "all_refused_with_findings": all(failed for _, failed in results),
            "image_reads": [e["facts"] for e in events].count("computed"),
            "decisions_computed": [e["cache"] for e in events].count("computed"),
            "per_spawn_s": summary([t for t, _ in results]),
            "admission_s_in_hub": summary([e["seconds"] for e in events])}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--warm", type=int, default=50)
    parser.add_argument("--storm", type=int, default=20)
    parser.add_argument("--out", default="")
    parser.add_argument("--verify-files", action="store_true", help="also measure with conda_verify_files on")
    parser.add_argument("--verify-channel", default="", help="conda_verify_channels URL for conda-forge")
    parser.add_argument("--images", nargs="*", default=[LARGEST, COMPLIANT, SHIPPED])
    args = parser.parse_args()
    result = {
        "host": {"cpus": os.cpu_count(), "load_1m_before": round(os.getloadavg()[0], 2)},
        "admission": [asyncio.run(admission_samples(image, args.cold, args.warm, layers, verify, args.verify_channel))
                      for image in args.images for layers in (True, False)
                      for verify in ((False, True) if args.verify_files else (False,))],
        "export_s": {image: export_seconds(image) for image in args.images},
        "storm": storm(args.storm) if args.storm else None,
    }
    result["host"]["load_1m_after"] = round(os.getloadavg()[0], 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
