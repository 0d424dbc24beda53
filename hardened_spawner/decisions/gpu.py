"""GPU inventory parsing and the allocator that gives each GPU to at most N servers at a time.

Pure and thread-safe: the allocator holds which server (``holder``, the
container name) has which GPU ids, under one lock; the spawner tells it what
Docker says. Holdings move through two states: *pending* from allocation
until the container runs, then *confirmed*. :meth:`GpuAllocator.reconcile`
replaces confirmed holdings with what Docker lists as running (so a
container removed behind the hub's back frees its GPU, and a hub restart
recovers every running container's GPUs from its labels) while it never
touches a pending one.
"""

import itertools
import threading
from dataclasses import dataclass


class GpuUnavailable(Exception):
    """Not enough GPUs for a request; the fields say how many were needed and free."""

    def __init__(self, needed, free, total):
        super().__init__(f"needed {needed} GPU(s), {free} of {total} free")
        self.needed, self.free, self.total = needed, free, total


class GpuQuotaExceeded(GpuUnavailable):
    """The owner already holds ``held`` GPUs on other servers and may hold at most ``limit``."""

    def __init__(self, needed, held, limit, free, total):
        super().__init__(needed, free, total)
        self.held, self.limit = held, limit


@dataclass(frozen=True)
class Holding:
    gpus: tuple
    owner: str
    token: int
    confirmed: bool


@dataclass(frozen=True)
class Snapshot:
    """What the allocator knew before Docker was asked: the seq and the confirmed tokens."""

    seq: int
    confirmed: frozenset


def parse_nvidia_smi(text):
    """GPU indexes from ``nvidia-smi --query-gpu=index,uuid --format=csv,noheader``.

    Returns ``[(index, uuid), ...]``; raises ValueError on a line it cannot read.
    """
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or not fields[0].isdigit() or not fields[1].startswith("GPU-"):
            raise ValueError(f"unexpected nvidia-smi line: {line!r}")
        gpus.append((fields[0], fields[1]))
    return gpus


def format_label(gpus):
    return ",".join(gpus)


def parse_label(value):
    return tuple(g.strip() for g in (value or "").split(",") if g.strip())


def running_holdings(containers, gpu_label, owner_label):
    """``{holder: (gpus, owner)}`` from docker-py ``containers()`` entries of running containers."""
    running = {}
    for c in containers:
        gpus = parse_label((c.get("Labels") or {}).get(gpu_label))
        names = c.get("Names") or []
        if gpus and names and c.get("State", "running") in ("running", "paused", "restarting"):
            running[names[0].lstrip("/")] = (gpus, (c.get("Labels") or {}).get(owner_label, ""))
    return running


class GpuAllocator:
    """Hands out GPU ids so that each is held by at most ``per_gpu`` holders."""

    def __init__(self, gpus, per_gpu=1):
        if per_gpu < 1:
            raise ValueError("per_gpu must be at least 1")
        self.gpus = tuple(dict.fromkeys(gpus))
        self.per_gpu = per_gpu
        self._lock = threading.Lock()
        self._holdings = {}
        self._tokens = itertools.count(1)
        self._seq = 0
        self._touched = {}  # holder -> seq of its last change

    # ---- queries ----------------------------------------------------------------
    def usage(self):
        """``{gpu: (holders...)}`` for every GPU, in inventory order."""
        with self._lock:
            return self._usage()

    def _usage(self):
        users = {g: [] for g in self.gpus}
        for holder, h in sorted(self._holdings.items()):
            for g in h.gpus:
                users[g].append(holder)
        return {g: tuple(hs) for g, hs in users.items()}

    def holdings(self):
        """``{holder: Holding}`` of every holder."""
        with self._lock:
            return dict(self._holdings)

    def holding(self, holder):
        with self._lock:
            return self._holdings.get(holder)

    def free(self):
        """How many GPUs have room for one more holder."""
        with self._lock:
            return sum(len(hs) < self.per_gpu for hs in self._usage().values())

    def snapshot(self):
        with self._lock:
            return Snapshot(self._seq, frozenset(h.token for h in self._holdings.values() if h.confirmed))

    # ---- changes ------------------------------------------------------------------
    def _set(self, holder, holding):
        self._seq += 1
        self._touched[holder] = self._seq
        if holding is None:
            return self._holdings.pop(holder, None)
        self._holdings[holder] = holding
        return holding

    def allocate(self, holder, count, owner="", owner_limit=0):
        """Give ``holder`` ``count`` distinct GPUs (pending) and return their ids.

        A holder's earlier holding is replaced. Raises :class:`GpuQuotaExceeded`
        when ``owner`` would hold more than ``owner_limit`` (0: no limit) across
        holders, :class:`GpuUnavailable` when too few GPUs have room.
        """
        with self._lock:
            usage = self._usage()
            mine = self._holdings.get(holder)
            if mine:
                for g in mine.gpus:
                    usage[g] = tuple(h for h in usage[g] if h != holder)
            room = [g for g in self.gpus if len(usage[g]) < self.per_gpu]
            if owner_limit:
                held = sum(len(h.gpus) for k, h in self._holdings.items() if h.owner == owner and k != holder)
                if held + count > owner_limit:
                    raise GpuQuotaExceeded(count, held, owner_limit, len(room), len(self.gpus))
            if count > len(room):
                raise GpuUnavailable(count, len(room), len(self.gpus))
            # least shared first, then inventory order: spreads holders in sharing mode
            order = {g: i for i, g in enumerate(self.gpus)}
            chosen = tuple(sorted(sorted(room, key=lambda g: (len(usage[g]), order[g]))[:count], key=order.get))
            self._set(holder, Holding(chosen, owner, next(self._tokens), confirmed=False) if count else None)
            return chosen

    def confirm(self, holder):
        """The holder's container runs: from now on Docker's list is the truth for it."""
        with self._lock:
            h = self._holdings.get(holder)
            if h and not h.confirmed:
                self._set(holder, Holding(h.gpus, h.owner, h.token, confirmed=True))

    def release(self, holder, confirmed_only=False):
        """Free the holder's GPUs; returns their ids (empty if it held none).

        ``confirmed_only``: keep a pending holding (its start is still running).
        """
        with self._lock:
            h = self._holdings.get(holder)
            if h is None or (confirmed_only and not h.confirmed):
                return ()
            return self._set(holder, None).gpus

    def recover(self, holder, gpus, owner=""):
        """Record that ``holder`` runs with ``gpus`` (a container label). Returns ``(unknown, over)``.

        Ids not in the inventory are ignored and returned as ``unknown``. A GPU
        that is then held by more than ``per_gpu`` holders is returned in
        ``over``: the containers already share it, so it stays unavailable until
        enough of them stop.
        """
        with self._lock:
            return self._recover(holder, gpus, owner)

    def _recover(self, holder, gpus, owner):
        gpus = tuple(dict.fromkeys(gpus))  # a hand-edited label may name one twice
        known = tuple(g for g in gpus if g in self.gpus)
        unknown = tuple(g for g in gpus if g not in self.gpus)
        self._set(holder, Holding(known, owner, next(self._tokens), confirmed=True) if known else None)
        usage = self._usage()
        return unknown, tuple(g for g in known if len(usage[g]) > self.per_gpu)

    def reconcile(self, running, snapshot):
        """Make confirmed holdings match ``running`` (``{holder: (gpus, owner)}``, listed after ``snapshot``).

        Drops holdings confirmed at snapshot time whose container no longer
        runs; records running containers the allocator does not know, unless
        their holder changed since the snapshot (the list is then stale for
        it). Pending holdings are left alone. Returns ``(released, recovered)``
        as ``{holder: gpus}`` dicts.
        """
        released, recovered = {}, {}
        with self._lock:
            changed = {k for k, seq in self._touched.items() if seq > snapshot.seq}
            for holder, h in list(self._holdings.items()):
                if h.token in snapshot.confirmed and (holder not in running or running[holder][0] != h.gpus):
                    released[holder] = self._set(holder, None).gpus
            for holder, (gpus, owner) in running.items():
                if holder in self._holdings or holder in changed:
                    continue
                self._recover(holder, gpus, owner)
                if holder in self._holdings:
                    recovered[holder] = self._holdings[holder].gpus
        for holder in set(released) & set(recovered):  # same holder, other GPUs: report as recovered
            del released[holder]
        return released, recovered
