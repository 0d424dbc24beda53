"""GPU allocator: 10,000 allocate/free operations, their time, and double allocations (must be 0).

Runs the operations from several threads at once on one allocator, each
allocation checked against a ledger of who holds which GPU, so a GPU handed
to two servers would be counted. No Docker needed:

    python3 benchmarks/gpu_allocator.py --ops 10000 --threads 8 --gpus 4
"""

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hardened_spawner.decisions.gpu import GpuAllocator, GpuUnavailable  # noqa: E402


def run(ops, threads, gpus, per_gpu):
    alloc = GpuAllocator([str(i) for i in range(gpus)], per_gpu)
    ledger, guard = {}, threading.Lock()
    counts = {"allocated": 0, "refused": 0, "freed": 0, "double": 0}
    rounds = ops // 2  # each round is one allocate and one free

    def worker(t):
        rng = random.Random(t)
        for _ in range(rounds // threads + (t < rounds % threads)):
            holder = f"jupyter-bench-{t}"
            try:
                got = alloc.allocate(holder, rng.choice((1, 1, 1, 2)), owner=f"user{t}")
            except GpuUnavailable:
                with guard:
                    counts["refused"] += 1
                    counts["freed"] += 1  # the free of a refused round is a no-op, still an op
                alloc.release(holder)
                continue
            with guard:
                counts["allocated"] += 1
                for g in got:
                    ledger.setdefault(g, set()).add(holder)
                    if len(ledger[g]) > per_gpu:
                        counts["double"] += 1
            time.sleep(0)  # hold it while other threads run
            with guard:
                for g in got:
                    ledger[g].discard(holder)
            alloc.release(holder)
            with guard:
                counts["freed"] += 1

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - start
    done = counts["allocated"] + counts["refused"] + counts["freed"]
    return {"ops": done, "threads": threads, "gpus": gpus, "per_gpu": per_gpu, "seconds": round(seconds, 4),
            "ops_per_second": round(done / seconds), **counts,
            "left_held": sum(len(h) for h in alloc.usage().values())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--per-gpu", type=int, default=1)
    args = parser.parse_args()
    result = run(args.ops, args.threads, args.gpus, args.per_gpu)
    print(json.dumps(result))
    return 1 if result["double"] or result["left_held"] else 0


if __name__ == "__main__":
    sys.exit(main())
