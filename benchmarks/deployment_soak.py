"""Soak: spawn/stop cycles from many users in parallel through the production deployment (deploy/).

The deployment comes up as tests/integration/test_deployment.py brings it up (tests/deployrig.py):
the hub in its container behind nginx over TLS, PostgreSQL, a network per user, 4 GPU ids.
``--users`` users log in at the demo IdP; each runs ``--cycles`` start/stop cycles in a thread of
its own, through nginx (the first ``--gpu-users`` on the one-GPU profile, the others on the CPU
one). Every 10 s the hub container's processes are sampled (RSS and open file descriptors of
jupyterhub, the proxy and the SSH services). After: what the cycles left on the daemon (servers,
probe containers, per-user networks, volumes other than each user's home), and one GPU spawn per
GPU user at once, which gets a GPU each only if no lease was left behind. Run on the rig's daemon:

    DOCKER_HOST=unix:///run/hardened-spawner-rig/main/docker.sock \\
        python3 benchmarks/deployment_soak.py --users 20 --cycles 10
"""

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from deployrig import api, browser_login, deployed, hub_audit, progress, project_containers, up  # noqa: E402

SAMPLE = """
import json, os
out = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
        rss = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")]
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        continue
    name = next((n for n in ("jupyterhub", "configurable-http-proxy", "ssh-gateway", "ssh-keys")
                 if any(n.encode() in part for part in cmd)), None)
    if name and rss:
        kib, fd = out.get(name, (0, 0))
        out[name] = (kib + int(rss[0].split()[1]), fd + fds)
print(json.dumps(out))
"""


def sample(dclient):
    """{process: (RSS in KiB, open fds)} of the hub container's long-running processes."""
    hub = project_containers(dclient)["hub"]["Id"]
    exec_id = dclient.exec_create(hub, ["python3", "-c", SAMPLE])
    return json.loads(dclient.exec_start(exec_id))


def server_gone(deployment, user, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = api(deployment, user, "GET", f"/users/{user}")
        if r.status_code == 200 and not r.json().get("servers"):
            return True
        time.sleep(1)
    return False


def cycle(deployment, user, profile):
    """One start (until the progress stream says ready) and stop (until the hub lists no server)."""
    t0 = time.perf_counter()
    r = api(deployment, user, "POST", f"/users/{user}/server", json={"profile": profile})
    if r.status_code not in (201, 202):
        return {"user": user, "ok": False, "why": f"start {r.status_code}: {r.text[:200]}"}
    events = progress(deployment, user, timeout=600)
    ready = bool(events and events[-1].get("ready"))
    t1 = time.perf_counter()
    r = api(deployment, user, "DELETE", f"/users/{user}/server")
    gone = r.status_code in (202, 204) and server_gone(deployment, user)
    t2 = time.perf_counter()
    why = "" if ready and gone else (events[-1] if events and not ready else f"stop {r.status_code}")
    return {"user": user, "ok": ready and gone, "start": t1 - t0, "stop": t2 - t1, "why": str(why)[:300]}


def leftovers(dclient, users):
    owned = [c["Names"][0] for c in dclient.containers(all=True) if c["Labels"].get("hardened-spawner.owner") in users]
    probes = [c["Names"][0] for c in dclient.containers(all=True)
              if "hardened-spawner.isolation-probe" in c["Labels"] or "hardened-spawner.admission-probe" in c["Labels"]
              or c["Labels"].get("hardened-spawner.ssh-keys-helper") in users]
    networks = [n["Name"] for n in dclient.networks(filters={"label": "hardened-spawner.network"})]
    homes = {"jupyterhub-user-" + u.replace("-", "-2d") for u in users}
    volumes = [v["Name"] for v in (dclient.volumes().get("Volumes") or [])
               if any(u in v["Name"] for u in users) and v["Name"] not in homes]
    return {"containers": owned, "probe_or_helper_containers": probes, "networks": networks, "volumes": volumes}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=10, help="start/stop cycles per user")
    parser.add_argument("--gpu-users", type=int, default=4)
    parser.add_argument("--audit", type=Path, help="write the hub's audit log here (the deployment is removed after)")
    args = parser.parse_args()
    users = [f"soak{i:02d}" for i in range(args.users)]
    gpu_users = users[:args.gpu_users]
    dclient = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    with tempfile.TemporaryDirectory() as tmp, deployed(
            Path(tmp), dclient, {u: ["staff"] + (["ml-gpu"] if u in gpu_users else []) for u in users},
            gpu_ids=",".join(str(i) for i in range(args.gpu_users))) as deployment:
        up(deployment)
        for user in users:
            deployment["sessions"][user] = browser_login(deployment, user)
        samples, done = [(0.0, sample(dclient))], threading.Event()
        t0 = time.monotonic()

        def sampler():
            while not done.wait(10):
                samples.append((time.monotonic() - t0, sample(dclient)))

        threading.Thread(target=sampler, daemon=True).start()

        def run(user):
            profile = "gpu-1" if user in gpu_users else "cpu"
            return [cycle(deployment, user, profile) for _ in range(args.cycles)]

        with ThreadPoolExecutor(len(users)) as pool:
            results = [r for rs in pool.map(run, users) for r in rs]
        done.set()
        wall = time.monotonic() - t0
        samples.append((wall, sample(dclient)))
        left = leftovers(dclient, users)
        audit = hub_audit(dclient)
        if args.audit:
            args.audit.write_text("".join(json.dumps(e) + "\n" for e in audit))
        # No lease left behind: every GPU user at once gets a GPU of their own.
        for user in gpu_users:
            api(deployment, user, "POST", f"/users/{user}/server", json={"profile": "gpu-1"})
        final = {u: progress(deployment, u)[-1] for u in gpu_users}
        gpus = {}
        for user in gpu_users:
            (c,) = dclient.containers(filters={"label": f"hardened-spawner.owner={user}"})
            requests_ = dclient.inspect_container(c["Id"])["HostConfig"]["DeviceRequests"] or []
            gpus[user] = [g for r in requests_ for g in (r.get("DeviceIDs") or [])]
    ok = [r for r in results if r["ok"]]
    summary = {
        "users": args.users, "cycles": len(results), "ok": len(ok), "wall_s": round(wall, 1),
        "failures": [r for r in results if not r["ok"]][:10],
        "start_median_s": round(statistics.median(r["start"] for r in ok), 2) if ok else None,
        "start_max_s": round(max(r["start"] for r in ok), 2) if ok else None,
        "stop_median_s": round(statistics.median(r["stop"] for r in ok), 2) if ok else None,
        "leftovers": left,
        "audit_events": dict(sorted(Counter(e["event"] for e in audit).items())),
        "refusals": dict(Counter(e.get("reason", "") for e in audit if e["event"] == "spawn.denied")),
        "failures_audited": dict(Counter(r[:120] for e in audit if e["event"] == "spawn.failed"
                                         for r in e.get("reasons") or [""])),
        "final_gpu_spawns": {u: bool(final[u].get("ready")) for u in gpu_users}, "final_gpus": gpus,
        "hub_samples": [{"t": round(t, 1), **{k: {"rss_mib": round(v[0] / 1024, 1), "fds": v[1]} for k, v in s.items()}}
                        for t, s in samples],
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
