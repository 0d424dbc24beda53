"""Issue 4: exclusive GPUs under a spawn storm, across a hub crash, and when Docker removes a container.

One hub with 4 GPU ids. 20 users ask for a 1-GPU profile at once: exactly 4
get one, no id twice, the others read what to do and get no container. Then
the hub is killed and restarted while the 4 run: it recovers their GPUs from
the container labels, so the next user is refused; ``docker rm -f`` of one
container frees its GPU for the next spawn at once, and the hub's poll frees
the GPU of another that disappears.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import containers_of
from hubrig import Hub, remove_user_artifacts

pytestmark = [pytest.mark.docker, pytest.mark.hub]

EXTRA = """
c.Spawner.poll_interval = 2
c.HardenedDockerSpawner.gpu_ids = ['0', '1', '2', '3']
c.HardenedDockerSpawner.profiles = [
    {'slug': 'cpu', 'display_name': 'CPU', 'mem_limit': '512M', 'cpu_limit': 0.5, 'default': True},
    {'slug': 'gpu', 'display_name': 'GPU', 'mem_limit': '512M', 'cpu_limit': 0.5, 'gpus': 1},
]
c.HardenedDockerSpawner.gpu_busy_hint = 'Idle servers stop after one hour.'
"""
STORM = [f"gpu-s{i:02d}" for i in range(20)]
BUSY = ("No GPU is free for profile 'gpu' (GPU: 0.5 CPUs, 512 MiB, 1 GPU): it needs 1 and 0 of this hub's "
        "4 GPUs are free. Pick 'cpu' (CPU: 0.5 CPUs, 512 MiB) instead, or try again later: a GPU is freed as "
        "soon as the server holding it stops. Idle servers stop after one hour.")


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dclient, image):
    hub = Hub(tmp_path_factory.mktemp("gpu-storm"), EXTRA).start()
    yield hub
    hub.stop()
    remove_user_artifacts(dclient, hub.users)


def gpu_of(dclient, user):
    (c,) = containers_of(dclient, user)
    return dclient.inspect_container(c["Id"])["Config"]["Labels"]["hardened-spawner.gpus"], c["Id"]


def outcome(hub, user, events=None):
    """Spawn the GPU profile and follow it to its end: ("ready", "") or ("failed", message)."""
    r = hub.spawn(user, {"profile": "gpu"})
    assert r.status_code in (201, 202), r.text
    stream = hub.progress(user)
    if events is not None:
        events[user] = [e.get("message", "") for e in stream]
    last = stream[-1]
    return ("ready", "") if last.get("ready") else ("failed", last.get("message", ""))


@pytest.fixture(scope="module")
def storm(hub, dclient):
    for user in STORM:
        hub.ensure_user(user)
    started, events = time.monotonic(), {}
    with ThreadPoolExecutor(len(STORM)) as pool:
        results = dict(zip(STORM, pool.map(lambda u: outcome(hub, u, events), STORM)))
    return results, time.monotonic() - started, events


def test_twenty_concurrent_spawns_for_four_gpus(hub, dclient, storm):
    results, seconds, events = storm
    winners = sorted(u for u, (state, _) in results.items() if state == "ready")
    losers = sorted(u for u, (state, _) in results.items() if state == "failed")
    assert len(winners) == 4 and len(losers) == 16, results
    ids = [gpu_of(dclient, u)[0] for u in winners]
    assert sorted(ids) == ["0", "1", "2", "3"]  # no id given twice
    for user in losers:
        assert BUSY in results[user][1], results[user]
        assert containers_of(dclient, user) == []
    audit = hub.audit()
    assert sorted(e["gpus"][0] for e in audit if e["event"] == "gpu.allocate") == ["0", "1", "2", "3"]
    assert len([e for e in audit if e["event"] == "spawn.denied" and BUSY in e["reasons"][0]]) == 16
    # the progress stream named the profile and the GPU
    for user, gpu in zip(winners, ids):
        assert "Profile GPU: 0.5 CPUs, 512 MiB, 1 GPU" in events[user], events[user]
        assert f"Allocated GPU {gpu} for profile GPU" in events[user], events[user]
    assert seconds < 240, seconds


def test_hub_restart_recovers_gpus_and_docker_rm_frees_one(hub, dclient, storm):
    results = storm[0]
    winners = sorted(u for u, (state, _) in results.items() if state == "ready")
    held = {u: gpu_of(dclient, u) for u in winners}

    hub.kill()  # a crash: no cleanup, the containers keep running
    assert all(containers_of(dclient, u)[0]["State"] == "running" for u in winners)
    hub.start()
    for user in winners:  # the restarted hub still serves them
        assert hub.server(user)["ready"], user

    # every running GPU container was recovered from its label: the next user is refused
    state, message = outcome(hub, "gpu-r1")
    assert state == "failed" and BUSY in message
    recovered = {e["holder"]: e["gpus"] for e in hub.audit() if e["event"] == "gpu.recover"}
    assert sorted(g for gs in recovered.values() for g in gs) == ["0", "1", "2", "3"]

    # docker rm -f behind the hub's back: the next spawn gets that GPU at once
    gone_gpu, gone_id = held[winners[0]]
    dclient.remove_container(gone_id, force=True)
    assert outcome(hub, "gpu-r1") == ("ready", "")
    assert gpu_of(dclient, "gpu-r1")[0] == gone_gpu

    # another disappears: the hub's poll notices and frees its GPU
    second = winners[1]
    second_gpu, second_id = held[second]
    dclient.remove_container(second_id, force=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and hub.server(second) is not None:
        time.sleep(0.5)
    assert hub.server(second) is None
    assert any(e["event"] == "gpu.release" and e.get("user") == second and e["gpus"] == [second_gpu]
               and e["reason"] in ("container gone", "container stopped") for e in hub.audit())
    assert outcome(hub, "gpu-r2") == ("ready", "")
    assert gpu_of(dclient, "gpu-r2")[0] == second_gpu
