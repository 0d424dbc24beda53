"""The watcher's measurement on the real daemon: Docker runs one ``df`` at a time and answers 500 ("a disk usage
operation is already running") to the others; the hub's calls share one and wait out another process's."""

import asyncio
import threading

import docker
import pytest

from hardened_spawner.spawner import clients
from hardened_spawner.spawner.home_watch import measure

pytestmark = [pytest.mark.docker]


def test_measure_succeeds_while_another_process_runs_docker_df(dclient):
    stop, busy = threading.Event(), []

    def other():  # an admin's `docker system df`, again and again, on a client of its own
        client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
        while not stop.wait(0.3):  # a df takes 0.7 s on the full suite's daemon: two back to back left no gap
            try:
                client.df()
            except docker.errors.APIError as e:
                busy.append(str(e))

    threads = [threading.Thread(target=other)]
    for t in threads:
        t.start()
    try:
        async def looks():
            io = clients.docker_io({})
            return [await measure(io) for _ in range(10)] + list(await asyncio.gather(*(measure(io) for _ in range(5))))

        results = asyncio.run(looks())
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"{len(results)} measurements; the other process was refused {len(busy)} times: {busy[:1]}")
    assert len(results) == 15 and all(isinstance(r, dict) for r in results)
    assert busy and all("already running" in b for b in busy)  # the race is real on this daemon
