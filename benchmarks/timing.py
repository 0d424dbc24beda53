"""``timed(fn, runs)``: the median and 95th percentile (nearest rank) of ``fn``'s wall time, in ms."""

import math
import statistics
import time


def timed(fn, runs):
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[math.ceil(len(samples) * 0.95) - 1]
