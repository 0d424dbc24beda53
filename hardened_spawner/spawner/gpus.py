"""The hub's GPU pool: one allocator per Docker daemon, kept true to what Docker runs.

Before its first allocation the pool is filled from the labels of the GPU
containers Docker runs, so a restarted hub never hands out a GPU a running
container holds; when a request finds too few free GPUs it asks Docker
again, so a container removed behind the hub's back frees its GPU at once.
Concurrent fills and refreshes share one Docker query.
"""

import shutil
import subprocess

from ..admission.cache import SingleFlight
from ..decisions import gpu
from ..decisions.container import LABEL_GPUS, LABEL_OWNER


def discover(timeout=20):
    """GPU indexes from ``nvidia-smi`` on this machine; empty when it is not installed."""
    binary = shutil.which("nvidia-smi")
    if not binary:
        return ()
    out = subprocess.run(
        [binary, "--query-gpu=index,uuid", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=timeout, check=True,
    ).stdout
    return tuple(index for index, _ in gpu.parse_nvidia_smi(out))


class GpuDiscoveryFailed(Exception):
    """nvidia-smi could not list the GPUs."""


class GpuPool:
    """Exclusive (or ``sharing``-way shared) GPU leases, filled from and reconciled with Docker.

    ``ids``: the configured inventory (empty: ask nvidia-smi); ``io``: a
    :class:`~.clients.DockerIO` for the daemon; ``audit``: an
    :class:`~..audit.AuditLog`; ``log``: a logger.
    """

    def __init__(self, ids, sharing, io, audit, log, discover=discover):
        self.ids = tuple(ids)
        self.sharing = sharing
        self.io = io
        self.audit = audit
        self.log = log
        self.discover = discover
        self.allocator = None
        self._flights = SingleFlight(0)  # shares runs in flight, keeps no result

    async def ready(self):
        """The pool, filled from Docker's running containers before first use."""
        if self.allocator is None:
            await self._flights.get("fill", self._fill)
        return self

    async def _fill(self):
        ids = self.ids
        if not ids:
            try:
                ids = await self.io.run(self.discover)
            except (OSError, subprocess.SubprocessError, ValueError) as e:
                raise GpuDiscoveryFailed(str(e)) from None
            self.log.info("GPUs found by nvidia-smi: %s", ", ".join(ids) or "none")
        allocator = gpu.GpuAllocator(ids, self.sharing)
        await self._reconcile(allocator)
        self.allocator = allocator

    async def refresh(self):
        """Match the allocator to Docker's running containers."""
        await self._flights.get("refresh", lambda: self._reconcile(self.allocator))

    async def _reconcile(self, allocator):
        snapshot = allocator.snapshot()
        containers = await self.io("containers", filters={"label": LABEL_GPUS})
        running = gpu.running_holdings(containers, LABEL_GPUS, LABEL_OWNER)
        released, recovered = allocator.reconcile(running, snapshot)
        for holder, gpus in released.items():
            self.log.info("GPU %s freed: container %s no longer runs", ",".join(gpus), holder)
            self.audit.write("gpu.release", holder=holder, gpus=list(gpus), reason="container gone")
        for holder, gpus in recovered.items():
            self.log.info("GPU %s held by running container %s", ",".join(gpus), holder)
            self.audit.write("gpu.recover", holder=holder, owner=running[holder][1], gpus=list(gpus))
        for g, holders in allocator.usage().items():
            if len(holders) > allocator.per_gpu:
                self.log.warning("GPU %s is shared by %s, more than gpu_sharing=%s allows",
                                 g, ", ".join(holders), allocator.per_gpu)

    @property
    def total(self):
        return len(self.allocator.gpus) if self.allocator else 0

    def free(self):
        return self.allocator.free() if self.allocator else 0

    async def allocate(self, holder, count, owner, owner_limit=0):
        """``count`` GPU ids for ``holder`` (pending until :meth:`confirm`).

        Raises :class:`~..decisions.gpu.GpuUnavailable` (or its quota subclass)
        after asking Docker once more whether a GPU container went away.
        """
        await self.ready()
        try:
            return self.allocator.allocate(holder, count, owner=owner, owner_limit=owner_limit)
        except gpu.GpuUnavailable:
            await self.refresh()
            return self.allocator.allocate(holder, count, owner=owner, owner_limit=owner_limit)

    def confirm(self, holder):
        if self.allocator:
            self.allocator.confirm(holder)

    def release(self, holder, confirmed_only=False):
        return self.allocator.release(holder, confirmed_only=confirmed_only) if self.allocator else ()
