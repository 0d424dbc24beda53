"""Process-wide Docker clients, thread pools and caches: this module owns them all.

DockerSpawner runs its own Docker calls on one worker thread per class;
slow work (pulls, image reads, key stores) must not queue behind them, so it
runs on the pools here: ``io`` for Docker calls, ``admission`` for reading
images (many reads of one image at once), ``keys`` for key stores (a hung
store never blocks Docker calls). Every spawner of a hub process shares them,
whatever its class, as it shares the admission caches and the GPU pools.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import docker

from ..admission.cache import SingleFlight
from ..admission.facts import THREADS as ADMISSION_THREADS
from ..telemetry import metrics
from .home_watch import HomeWatcher
from .reclaim import IdleReclaimer

_POOL_SIZES = {"io": 4, "admission": ADMISSION_THREADS, "keys": 4}
_executors = {}
_clients = {}
_caches = {}
gpu_pools = {}  # (docker url, gpu ids, sharing) -> spawner.gpus.GpuPool
daemons = {}    # docker url -> decisions.invariants.Daemon (docker info, asked once)


def executor(name):
    """The shared thread pool ``name`` (``io``, ``admission`` or ``keys``)."""
    if name not in _executors:
        _executors[name] = ThreadPoolExecutor(_POOL_SIZES[name], thread_name_prefix=f"hardened-spawner-{name}")
    return _executors[name]


def docker_client(client_kwargs=None):
    """One ``docker.APIClient`` per set of connection settings (``DOCKER_HOST`` merged with ``client_kwargs``)."""
    kwargs = {**docker.utils.kwargs_from_env(), **(client_kwargs or {})}
    key = repr(sorted(kwargs.items(), key=lambda kv: kv[0]))
    if key not in _clients:
        _clients[key] = docker.APIClient(version="auto", **kwargs)
    return _clients[key]


def docker_url(client_kwargs=None):
    """The daemon address the hub talks to, for messages and pool keys."""
    return ((client_kwargs or {}).get("base_url") or docker.utils.kwargs_from_env().get("base_url")
            or "unix:///var/run/docker.sock")


def gpu_pool(key, make):
    """The process's GPU pool for ``key`` (docker url, GPU ids, sharing), made by ``make()`` on first use."""
    if key not in gpu_pools:
        gpu_pools[key] = make()
        metrics.watch_gpu_pools(gpu_allocators)
    return gpu_pools[key]


def pool_label(key):
    """How metrics and the operations page name a pool: its daemon, and its inventory when a daemon has two."""
    url, ids, sharing = key
    if sum(k[0] == url for k in gpu_pools) <= 1:
        return url
    return f"{url} gpus={','.join(ids) or 'nvidia-smi'} sharing={sharing}"


def gpu_allocators():
    """``[(pool label, allocator or None)]`` of every pool (the allocator is None until first use)."""
    return [(pool_label(key), pool.allocator) for key, pool in list(gpu_pools.items())]


def reclaimer():
    """The process's :class:`~.reclaim.IdleReclaimer` of GPU servers."""
    if "reclaimer" not in _caches:
        _caches["reclaimer"] = IdleReclaimer()
    return _caches["reclaimer"]


def home_watcher():
    """The process's :class:`~.home_watch.HomeWatcher` of homes with ``home_quota_mode = "watch"``."""
    if "home_watcher" not in _caches:
        _caches["home_watcher"] = HomeWatcher()
        metrics.watch_homes(_caches["home_watcher"].figures)
    return _caches["home_watcher"]


def admission_caches(size):
    """The process's ``(facts, decisions)`` single-flight caches."""
    if "admission" not in _caches:
        _caches["admission"] = (SingleFlight(size), SingleFlight(size * 4))
    return _caches["admission"]


def flights():
    """A process-wide SingleFlight that keeps no results: concurrent callers share one run."""
    if "flights" not in _caches:
        _caches["flights"] = SingleFlight(0)
    return _caches["flights"]


def verified_networks():
    """Ids of the networks this process proved isolating (spawner/isolation.py)."""
    return _caches.setdefault("verified_networks", set())


def taken_subnets():
    """Subnets this process's network creations hold until the daemon lists their networks (networks.py)."""
    return _caches.setdefault("taken_subnets", set())


def reset():
    """Forget the caches, GPU pools and daemon facts (tests; clients and pools of threads stay)."""
    _caches.clear()
    gpu_pools.clear()
    daemons.clear()


class DockerIO:
    """docker-py calls and other blocking work on a thread pool: ``await io("inspect_image", ref)``."""

    def __init__(self, client, pool):
        self.client = client
        self.pool = pool

    def __call__(self, method, *args, **kwargs):
        return self.run(lambda: getattr(self.client, method)(*args, **kwargs))

    def run(self, fn, *args):
        return asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)


def docker_io(client_kwargs=None):
    return DockerIO(docker_client(client_kwargs), executor("io"))
