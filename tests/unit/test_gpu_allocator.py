"""The GPU allocator: examples, hypothesis state machines, and threads."""

import shutil
import threading
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hardened_spawner.decisions import gpu
from hardened_spawner.decisions.gpu import GpuAllocator, GpuQuotaExceeded, GpuUnavailable

HOLDERS = [f"jupyter-u{i}" for i in range(8)]
OWNERS = ["alice", "bob", "carol"]


def test_allocate_gives_distinct_free_ids_and_refuses_when_full():
    a = GpuAllocator(["0", "1", "2", "3"])
    assert a.allocate("h1", 1) == ("0",)
    assert a.allocate("h2", 2) == ("1", "2")
    with pytest.raises(GpuUnavailable) as e:
        a.allocate("h3", 2)
    assert (e.value.needed, e.value.free, e.value.total) == (2, 1, 4)
    assert a.allocate("h3", 1) == ("3",)
    assert a.free() == 0
    assert a.release("h2") == ("1", "2")
    assert a.release("h2") == ()
    assert a.allocate("h4", 1) == ("1",)


def test_reallocating_a_holder_replaces_its_holding():
    a = GpuAllocator(["0", "1"])
    a.allocate("h", 2)
    assert a.allocate("h", 1) == ("0",)
    assert a.usage() == {"0": ("h",), "1": ()}
    assert a.allocate("h", 0) == () and a.holding("h") is None


def test_sharing_spreads_holders_then_fills():
    a = GpuAllocator(["0", "1"], per_gpu=2)
    assert [a.allocate(f"h{i}", 1) for i in range(4)] == [("0",), ("1",), ("0",), ("1",)]
    with pytest.raises(GpuUnavailable):
        a.allocate("h5", 1)
    with pytest.raises(ValueError):
        GpuAllocator(["0"], per_gpu=0)


def test_quota_counts_the_owners_other_servers():
    a = GpuAllocator(["0", "1", "2"])
    a.allocate("alice-1", 1, owner="alice", owner_limit=2)
    a.allocate("alice-2", 1, owner="alice", owner_limit=2)
    with pytest.raises(GpuQuotaExceeded) as e:
        a.allocate("alice-3", 1, owner="alice", owner_limit=2)
    assert (e.value.held, e.value.limit, e.value.free) == (2, 2, 1)
    assert a.allocate("alice-2", 1, owner="alice", owner_limit=2)  # its own holding does not count
    assert a.allocate("bob-1", 1, owner="bob", owner_limit=2) == ("2",)


def test_recover_reports_unknown_and_over_shared_gpus():
    a = GpuAllocator(["0", "1"])
    assert a.recover("old", ["1", "7"], owner="alice") == (("7",), ())
    assert a.holding("old").gpus == ("1",) and a.holding("old").confirmed
    assert a.recover("twin", ["1"]) == ((), ("1",))
    with pytest.raises(GpuUnavailable):  # shared beyond the limit: stays unavailable
        a.allocate("new", 2)
    a.release("old")
    with pytest.raises(GpuUnavailable):
        a.allocate("new", 2)
    assert a.allocate("new", 1) == ("0",)


def test_reconcile_frees_gone_keeps_pending_and_recovers_unknown():
    a = GpuAllocator(["0", "1", "2", "3"])
    a.allocate("gone", 1), a.confirm("gone")
    a.allocate("running", 1), a.confirm("running")
    a.allocate("pending", 1)
    snap = a.snapshot()
    running = {"running": (("1",), "bob"), "orphan": (("3",), "carol")}
    released, recovered = a.reconcile(running, snap)
    assert released == {"gone": ("0",)}
    assert recovered == {"orphan": ("3",)}
    assert a.usage() == {"0": (), "1": ("running",), "2": ("pending",), "3": ("orphan",)}


def test_reconcile_ignores_what_changed_after_the_snapshot():
    a = GpuAllocator(["0", "1"])
    a.allocate("x", 1), a.confirm("x")
    snap = a.snapshot()
    listed = {"x": (("0",), "")}  # Docker's list, taken now
    a.release("x")  # x stops while the list is on its way
    a.allocate("y", 1), a.confirm("y")  # y starts after the snapshot: not on the list
    released, recovered = a.reconcile(listed, snap)
    assert (released, recovered) == ({}, {})
    assert a.usage() == {"0": ("y",), "1": ()}


def test_nvidia_smi_parsing():
    text = ("0, GPU-6f1c2d6e-1b4a-5c2e-9e1f-0a1b2c3d4e5f\n"
            "1, GPU-0b2c3d4e-5f60-7182-93a4-b5c6d7e8f901\n\n")
    assert gpu.parse_nvidia_smi(text) == [
        ("0", "GPU-6f1c2d6e-1b4a-5c2e-9e1f-0a1b2c3d4e5f"), ("1", "GPU-0b2c3d4e-5f60-7182-93a4-b5c6d7e8f901")]
    assert gpu.parse_nvidia_smi("") == []
    for bad in ("NVIDIA-SMI has failed", "0, 1", "x, GPU-1"):
        with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
            gpu.parse_nvidia_smi(bad)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")
def test_discover_without_nvidia_smi_finds_none():
    from hardened_spawner.spawner.gpus import discover  # the I/O half lives in the spawner's shell

    assert discover() == ()


def test_labels_and_running_holdings():
    assert gpu.format_label(("0", "2")) == "0,2"
    assert gpu.parse_label(" 0, 2 ,") == ("0", "2") and gpu.parse_label(None) == ()
    containers = [
        {"Names": ["/jupyter-a"], "State": "running", "Labels": {"g": "0,1", "o": "alice"}},
        {"Names": ["/jupyter-b"], "State": "exited", "Labels": {"g": "2", "o": "bob"}},
        {"Names": ["/jupyter-c"], "State": "running", "Labels": {"o": "carol"}},
    ]
    assert gpu.running_holdings(containers, "g", "o") == {"jupyter-a": (("0", "1"), "alice")}


@given(st.lists(st.tuples(st.sampled_from(["alloc", "free", "recover"]), st.sampled_from(HOLDERS),
                          st.integers(0, 3), st.lists(st.sampled_from("012345"), max_size=3)), max_size=60),
       st.integers(1, 3), st.integers(1, 5))
def test_allocate_never_adds_a_holder_to_a_full_gpu(ops, per_gpu, count):
    """Any interleaving of allocate/free/recover, recover included with claims that conflict."""
    a = GpuAllocator([str(i) for i in range(count)], per_gpu)
    for op, holder, n, claimed in ops:
        if op == "alloc":
            before = a.usage()
            try:
                got = a.allocate(holder, n)
            except GpuUnavailable:
                others = {g: [h for h in hs if h != holder] for g, hs in before.items()}
                assert sum(len(hs) < per_gpu for hs in others.values()) < n
                continue
            assert len(got) == n == len(set(got))
            for g in got:
                assert len([h for h in before[g] if h != holder]) < per_gpu
        elif op == "free":
            a.release(holder)
        else:
            a.recover(holder, claimed)
        assert all(len(hs) == len(set(hs)) for hs in a.usage().values())


class HubAndDocker(RuleBasedStateMachine):
    """The allocator next to a model of Docker: spawns, stops, ``docker rm -f``, polls, refreshes
    whose container list arrives late, and hub restarts that recover from labels."""

    @initialize(count=st.integers(1, 4), per_gpu=st.integers(1, 2), quota=st.sampled_from([0, 2]))
    def setup(self, count, per_gpu, quota):
        self.ids = [str(i) for i in range(count)]
        self.per_gpu, self.quota = per_gpu, quota
        self.alloc = GpuAllocator(self.ids, per_gpu)
        self.running = {}  # what Docker runs: holder -> (gpus, owner)
        self.pending = {}  # allocated, container not started: holder -> owner
        self.vanished = set()  # removed behind the hub's back, not yet polled
        self.refresh = None  # (snapshot, Docker's list) of a refresh in flight

    @rule(holder=st.sampled_from(HOLDERS), n=st.integers(0, 3), owner=st.sampled_from(OWNERS))
    def spawn(self, holder, n, owner):
        if holder in self.running or holder in self.vanished:
            return  # a spawner allocates only when its server is not running
        try:
            got = self.alloc.allocate(holder, n, owner=owner, owner_limit=self.quota)
        except GpuUnavailable:
            self.pending.pop(holder, None)
            self.alloc.release(holder)
            return
        assert len(got) == n
        self.pending[holder] = owner

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), ok=st.booleans())
    def container_starts_or_fails(self, data, ok):
        holder = data.draw(st.sampled_from(sorted(self.pending)))
        owner = self.pending.pop(holder)
        if ok:
            h = self.alloc.holding(holder)
            self.alloc.confirm(holder)
            if h and h.gpus:
                self.running[holder] = (h.gpus, owner)
        else:
            self.alloc.release(holder)

    @precondition(lambda self: self.running)
    @rule(data=st.data(), behind_our_back=st.booleans())
    def container_goes(self, data, behind_our_back):
        holder = data.draw(st.sampled_from(sorted(self.running)))
        del self.running[holder]
        if behind_our_back:
            self.vanished.add(holder)  # docker rm -f
        else:
            self.alloc.release(holder)  # stop

    @precondition(lambda self: self.vanished)
    @rule(data=st.data())
    def poll_finds_it_gone(self, data):
        holder = data.draw(st.sampled_from(sorted(self.vanished)))
        self.vanished.discard(holder)
        self.alloc.release(holder)

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def poll_sees_a_container_not_yet_started(self, data):
        holder = data.draw(st.sampled_from(sorted(self.pending)))
        before = self.alloc.holding(holder)
        assert self.alloc.release(holder, confirmed_only=True) == ()
        assert self.alloc.holding(holder) == before

    @precondition(lambda self: self.refresh is None)
    @rule()
    def refresh_asks_docker(self):
        self.refresh = (self.alloc.snapshot(), dict(self.running))

    @precondition(lambda self: self.refresh is not None)
    @rule()
    def docker_answers(self):
        snapshot, listed = self.refresh
        self.refresh = None
        released, _ = self.alloc.reconcile(listed, snapshot)
        self.vanished -= set(released)

    @rule()
    def hub_restarts(self):
        self.alloc = GpuAllocator(self.ids, self.per_gpu)
        self.pending.clear()  # spawns in flight die with the hub
        self.vanished.clear()  # gone before the restart: nothing to recover
        self.refresh = None
        self.alloc.reconcile(dict(self.running), self.alloc.snapshot())

    @invariant()
    def no_gpu_has_more_holders_than_allowed(self):
        if hasattr(self, "alloc"):
            assert all(len(hs) <= self.per_gpu for hs in self.alloc.usage().values())

    @invariant()
    def every_running_container_keeps_its_gpus(self):
        for holder, (gpus, _) in getattr(self, "running", {}).items():
            h = self.alloc.holding(holder)
            assert h is not None and h.gpus == gpus, (holder, gpus, h)

    @invariant()
    def no_gpu_is_held_for_a_server_that_is_not_there(self):
        if hasattr(self, "alloc"):
            holders = {h for hs in self.alloc.usage().values() for h in hs}
            assert holders <= set(self.running) | set(self.pending) | self.vanished

    @invariant()
    def docker_never_shares_a_gpu_beyond_the_limit(self):
        use = Counter(g for gpus, _ in getattr(self, "running", {}).values() for g in gpus)
        assert all(n <= self.per_gpu for n in use.values())

    @invariant()
    def quota_holds(self):
        if getattr(self, "quota", 0):
            held = Counter()
            for holder, hs in ((h, self.alloc.holding(h)) for h in HOLDERS):
                if hs:
                    held[hs.owner] += len(hs.gpus)
            assert all(n <= self.quota for n in held.values())


HubAndDocker.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
test_hub_and_docker = HubAndDocker.TestCase


def test_threads_never_get_the_same_gpu():
    """16 threads allocate and free 1-2 GPUs of 4 in a loop; a GPU is never in two hands."""
    a = GpuAllocator(["0", "1", "2", "3"])
    in_use, guard, errors, granted = {}, threading.Lock(), [], Counter()

    def worker(i):
        for k in range(400):
            holder = f"t{i}"
            try:
                got = a.allocate(holder, 1 + (k + i) % 2)
            except GpuUnavailable:
                continue
            with guard:
                for g in got:
                    if g in in_use:
                        errors.append((g, in_use[g], holder))
                    in_use[g] = holder
                granted[holder] += 1
            with guard:
                for g in got:
                    del in_use[g]
            a.release(holder)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(granted.values()) > 100  # the test exercised real contention
    assert a.usage() == {g: () for g in "0123"}
