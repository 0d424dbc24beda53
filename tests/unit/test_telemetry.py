"""Audit records become Prometheus metrics, jupyter_events and history; services forward theirs to the hub."""

import ast
import asyncio
import json
import logging
from pathlib import Path

import pytest
from jupyter_events import EventLogger
from prometheus_client import REGISTRY
from tornado import httpserver, web

from hardened_spawner import audit, telemetry
from hardened_spawner.audit import AuditLog
from hardened_spawner.decisions.gpu import GpuAllocator
from hardened_spawner.telemetry import events, metrics
from hardened_spawner.telemetry.forward import HubForwarder
from hardened_spawner.telemetry.history import History

PACKAGE = Path(__file__).resolve().parents[2] / "hardened_spawner"
P = metrics.PREFIX


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def parse(path):
    """``ast.parse``, once more on CPython 3.11's spurious "AST constructor recursion depth mismatch"
    (python/cpython#106905: its AST builder's depth counter is shared by every thread of the process,
    and a thread another test left running built an AST at the same moment: seen once in CI)."""
    try:
        return ast.parse(path.read_text())
    except SystemError as e:
        if "recursion depth mismatch" not in str(e):
            raise
        return ast.parse(path.read_text())


def audited_event_names():
    """Every event name passed to ``<...>.audit.write(name, ...)`` in the package: a literal, or the
    literals assigned to the variable passed."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        tree = parse(path)
        assigned = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                assigned.setdefault(node.targets[0].id, set()).update(
                    c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "write"
                    and node.args and "audit" in ast.unparse(node.func.value)):
                first = node.args[0]
                if isinstance(first, ast.Constant):
                    names.add(first.value)
                elif isinstance(first, ast.Name):
                    names |= assigned.get(first.id, set())
    return names


# ---- the audit sink ------------------------------------------------------------------------
def test_sinks_see_each_record_and_a_failing_sink_never_fails_the_write(tmp_path, caplog):
    seen = []

    def broken(record):
        raise RuntimeError("boom")

    audit.add_sink(broken)
    audit.add_sink(seen.append)
    audit.add_sink(seen.append)  # added once
    try:
        line = AuditLog(str(tmp_path / "a.log")).write("stop", user="u", api_token="t")
    finally:
        audit.remove_sink(broken)
        audit.remove_sink(seen.append)
    assert [r["event"] for r in seen] == ["stop"] and "api_token" not in seen[0]
    assert json.loads(line) == seen[0]
    assert "audit sink" in caplog.text and "boom" in caplog.text


# ---- metrics -------------------------------------------------------------------------------
def test_admission_records_count_decisions_findings_cache_and_duration():
    before = (value(f"{P}_admission_decisions_total", decision="deny", trigger="spawn"),
              value(f"{P}_admission_findings_total", rule="image.user-root", action="deny"),
              value(f"{P}_admission_cache_lookups_total", cache="decision", result="computed"),
              value(f"{P}_admission_cache_lookups_total", cache="facts", result="cached"),
              value(f"{P}_admission_duration_seconds_count", cache="computed"),
              value(f"{P}_admission_decisions_total", decision="admit", trigger="recheck"))
    metrics.observe({"event": "admission", "decision": "deny", "cache": "computed", "facts": "cached", "seconds": 0.3,
                     "findings": [{"rule": "image.user-root", "action": "deny"}]})
    metrics.observe({"event": "admission", "decision": "admit", "trigger": "recheck", "cache": "cached",
                     "seconds": 0.001})
    after = (value(f"{P}_admission_decisions_total", decision="deny", trigger="spawn"),
             value(f"{P}_admission_findings_total", rule="image.user-root", action="deny"),
             value(f"{P}_admission_cache_lookups_total", cache="decision", result="computed"),
             value(f"{P}_admission_cache_lookups_total", cache="facts", result="cached"),
             value(f"{P}_admission_duration_seconds_count", cache="computed"),
             value(f"{P}_admission_decisions_total", decision="admit", trigger="recheck"))
    assert [a - b for a, b in zip(after, before)] == [1, 1, 1, 1, 1, 1]


def test_spawn_phases_denials_logins_and_revocations_are_counted():
    names = [(f"{P}_spawn_phase_duration_seconds_count", {"phase": "admission"}),
             (f"{P}_spawn_phase_duration_seconds_sum", {"phase": "admission"}),
             (f"{P}_spawns_total", {"outcome": "started"}),
             (f"{P}_spawn_denials_total", {"reason": "gpu-busy"}),
             (f"{P}_logins_total", {"where": "gateway", "decision": "deny"}),
             (f"{P}_key_store_lookups_total", {"where": "gateway", "outcome": "failed"}),
             (f"{P}_auth_revocations_total", {"reason": "no-matching-rule"}),
             (f"{P}_audit_events_total", {"event": "oom"})]
    before = [value(n, **labels) for n, labels in names]
    for record in ({"event": "spawn", "phases": {"admission": 0.25, "gpus": 0.01}},
                   {"event": "spawn.denied", "reason": "gpu-busy"},
                   {"event": "ssh.gateway.auth", "decision": "deny", "store": "failed"},
                   {"event": "auth.revoked", "reason": "no-matching-rule"},
                   {"event": "oom"}):
        metrics.observe(record)
    after = [value(n, **labels) for n, labels in names]
    assert [round(a - b, 3) for a, b in zip(after, before)] == [1, 0.25, 1, 1, 1, 1, 1, 1]


def test_label_values_exist_at_zero_before_the_first_event():
    assert REGISTRY.get_sample_value(f"{P}_spawns_total", {"outcome": "failed"}) is not None
    assert REGISTRY.get_sample_value(f"{P}_gpu_reclaims_total", {"reason": "max-age"}) is not None


def test_gpu_gauges_are_read_from_the_pools_at_scrape_time():
    allocator = GpuAllocator(["0", "1", "2"])
    collector = metrics.GpuCollector(lambda: [("unix:///d.sock", allocator), ("unused", None)])
    allocator.allocate("c1", 1)
    allocator.confirm("c1")
    allocator.allocate("c2", 1)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for m in collector.collect() for s in m.samples}
    pool = ("pool", "unix:///d.sock")
    assert samples[(f"{P}_gpus", (pool,))] == 3
    assert samples[(f"{P}_gpu_leases", (pool, ("state", "held")))] == 1
    assert samples[(f"{P}_gpu_leases", (pool, ("state", "pending")))] == 1
    assert samples[(f"{P}_gpus_free", (pool,))] == 1
    assert samples[(f"{P}_gpu_holders", (("gpu", "2"), pool))] == 0
    allocator.release("c1")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for m in collector.collect() for s in m.samples}
    assert samples[(f"{P}_gpus_free", (pool,))] == 2


# ---- jupyter_events ------------------------------------------------------------------------
def test_every_schema_is_a_valid_versioned_jupyter_event_schema():
    logger = EventLogger()
    events.register(logger)
    assert set(logger.schemas.schema_ids) == set(events.schemas())
    for path, _ in events.schemas().values():
        text = path.read_text()
        assert 'version: "1"' in text and "$id: urn:hardened-spawner:events:" in text, path


def test_every_audit_event_the_package_writes_has_a_schema():
    names = audited_event_names()
    assert {"spawn", "spawn.denied", "admission", "ssh.gateway.auth", "auth.revoked", "gpu.reclaim"} <= names
    assert {n for n in names if events.schema_for(n) is None} == set()


class Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(json.loads(self.format(record)))


SAMPLES = [
    {"ts": "2026-05-01T10:00:00.000+00:00", "event": "spawn", "user": "a", "server": "", "image": "img:1",
     "digest": "sha256:x", "limits": {"gpus": ["0"]}, "phases": {"config": 0.01}, "decision": "admit", "reasons": []},
    {"ts": "2026-05-01T10:00:01.000+00:00", "event": "spawn.denied", "user": "a", "server": "", "image": None,
     "decision": "deny", "reason": "gpu-busy", "reasons": ["No GPU is free"]},
    {"ts": "2026-05-01T10:00:02.000+00:00", "event": "admission", "user": "a", "server": "", "image": "img:1",
     "decision": "deny", "cache": "computed", "facts": "computed", "seconds": 0.2,
     "findings": [{"rule": "image.user-root", "severity": "high", "action": "deny", "message": "m",
                   "remediation": "r"}]},
    {"ts": "2026-05-01T10:00:03.000+00:00", "event": "ssh.keys.added", "user": "a", "actor": "a"},
    {"ts": "2026-05-01T10:00:04.000+00:00", "event": "auth.revoked", "user": "a", "reason": "blocked",
     "message": "m"},
    {"ts": "2026-05-01T10:00:05.000+00:00", "event": "ssh.gateway.auth", "user": "a", "peer": "127.0.0.1",
     "decision": "accept", "fingerprint": "SHA256:x"},
    {"ts": "2026-05-01T10:00:06.000+00:00", "event": "gpu.reclaim", "user": "a", "server": "", "gpus": ["0"],
     "reason": "idle", "last_activity": None, "activity_source": "server"},
]


def test_records_are_emitted_with_their_schema_and_timestamp():
    capture = Capture()
    logger = EventLogger(handlers=[capture])
    for record in SAMPLES:
        assert events.emit(record, logger) is not None, record
    got = capture.records
    assert [g["__schema__"].rsplit(":", 1)[1] for g in got] == [
        "spawn", "denial", "admission", "ssh-keys", "revocation", "gateway", "gpu"]
    assert all(g["__schema_version__"] == "1" for g in got)
    assert got[0]["__timestamp__"] == "2026-05-01T10:00:00Z" and "ts" not in got[0]
    assert got[2]["findings"][0]["rule"] == "image.user-root"


def test_a_record_that_breaks_its_schema_is_dropped_with_a_warning(caplog):
    capture = Capture()
    logger = EventLogger(handlers=[capture])
    bad = {"ts": "2026-05-01T10:00:00+00:00", "event": "admission", "image": "x", "decision": "maybe"}
    with caplog.at_level(logging.WARNING):
        assert events.emit(bad, logger) is None
    assert capture.records == [] and "does not match" in caplog.text
    assert events.emit({"event": "no.such.event"}, logger) is None


# ---- history -------------------------------------------------------------------------------
def test_history_keeps_latest_verdicts_and_backfills_older_records_once(tmp_path):
    path = tmp_path / "audit.log"
    old = [dict(ts=f"2026-05-01T09:0{i}:00+00:00", event="admission", image=f"img{i % 2}", decision="admit")
           for i in range(4)] + [dict(ts="2026-05-01T09:05:00+00:00", event="spawn.denied", reason="gpu-busy")]
    path.write_text("".join(json.dumps(r) + "\n" for r in old) + "not json\n")
    history = History(size=10)
    live = {"ts": "2026-05-01T10:00:00+00:00", "event": "admission", "image": "img0", "decision": "deny"}
    history.add(live)
    with path.open("a") as f:  # the live record is in the file too: not counted twice
        f.write(json.dumps(live) + "\n")
    history.backfill(str(path))
    history.backfill(str(path))
    assert [r["ts"][11:16] for r in history.recent_admissions()] == ["10:00", "09:03", "09:02", "09:01", "09:00"]
    assert {v["image"]: v["decision"] for v in history.image_verdicts()} == {"img0": "deny", "img1": "admit"}
    assert [reason for _, reason in history.denials] == ["gpu-busy"]


def test_the_hub_sink_is_installed_once():
    telemetry.install()
    telemetry.install()
    assert audit._sinks.count(telemetry.hub_sink) == 1


# ---- forwarding from a service to the hub ---------------------------------------------------
class Reports(web.RequestHandler):
    def initialize(self, got, code):
        self.got, self.code = got, code

    def post(self):
        self.got.append((self.request.headers["Authorization"], json.loads(self.request.body)))
        self.set_status(self.code[0])


async def _serve(code):
    got = []
    app = web.Application([(r"/hub/api/hardened-spawner/events", Reports, {"got": got, "code": code})])
    server = httpserver.HTTPServer(app)
    [sock] = __import__("tornado.netutil", fromlist=["x"]).bind_sockets(0, "127.0.0.1")
    server.add_sockets([sock])
    return server, got, f"http://127.0.0.1:{sock.getsockname()[1]}/hub/api"


async def _until(predicate, timeout=5.0):
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_a_service_forwards_its_records_in_batches_and_retries_until_the_hub_answers():
    code = [503]
    server, got, url = await _serve(code)
    forward = HubForwarder(url, "svc-token", retry=(0.05, 0.1))
    try:
        forward({"event": "ssh.gateway.auth", "decision": "deny"})
        forward({"event": "ssh.gateway.auth", "decision": "accept"})
        await _until(lambda: len(got) >= 1)
        assert len(forward.queue) == 2  # not acknowledged: kept
        code[0] = 200
        await _until(lambda: not forward.queue)
        assert got[-1] == ("token svc-token", {"events": [{"event": "ssh.gateway.auth", "decision": "deny"},
                                                          {"event": "ssh.gateway.auth", "decision": "accept"}]})
        code[0] = 403  # the hub says no for good: the forwarder stops and queues nothing more
        forward({"event": "ssh.gateway.auth", "decision": "deny"})
        await _until(lambda: forward.stopped)
        forward({"event": "ssh.gateway.auth", "decision": "deny"})
        assert len(forward.queue) == 1
    finally:
        server.stop()


@pytest.mark.parametrize("maxsize", [2])
async def test_a_full_queue_drops_the_oldest(maxsize):
    forward = HubForwarder("http://127.0.0.1:9/hub/api", "t", maxsize=maxsize, retry=(30, 30))
    for i in range(4):
        forward({"event": "ssh.gateway.auth", "n": i})
    assert [r["n"] for r in forward.queue] == [2, 3] and forward.dropped == 2
    forward._task.cancel()


def test_a_service_may_report_only_its_own_kinds_of_event():
    from hardened_spawner.operations.reports import accept

    kept, refused = accept([{"event": "ssh.gateway.auth", "decision": "deny"}, {"event": "spawn", "user": "x"},
                            {"event": "ssh.keys.added", "user": "a"}, {"event": "ssh.keys", "user": "a"},
                            "junk", {"event": 3}], "ssh-gateway")
    assert [(r["event"], r["reporter"]) for r in kept] == [("ssh.gateway.auth", "ssh-gateway"),
                                                           ("ssh.keys.added", "ssh-gateway")]
    assert refused == 4
