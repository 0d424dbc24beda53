"""Prometheus metrics of the hardened spawner, on the hub's own ``/hub/metrics``.

The metrics live in prometheus_client's default registry, the one the hub
serves, and take JupyterHub's prefix (``JUPYTERHUB_METRICS_PREFIX``, default
``jupyterhub``): ``jupyterhub_hardened_admission_decisions_total`` and so on.
Nearly all of them are counted from audit records (:func:`observe`), so a
number on a dashboard and a line in the audit log always agree; the GPU
gauges are read from the hub's GPU pools when Prometheus scrapes.

Labels carry codes from a small known set (rule ids, reason codes, phase
names), never user names, images or free text, so the number of series stays
bounded (one opt-in exception: ``home_metrics_per_user``). Label values that exist before the first event are created at zero,
as JupyterHub does, so alerts and rates work from the start.
"""

import os

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

PREFIX = os.getenv("JUPYTERHUB_METRICS_PREFIX", "jupyterhub") + "_hardened"
SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, float("inf"))

ADMISSIONS = Counter(f"{PREFIX}_admission_decisions", "Admission decisions on images at spawn, by decision "
                     "(admit, deny, error) and trigger (spawn, recheck)", ["decision", "trigger"])
FINDINGS = Counter(f"{PREFIX}_admission_findings", "Admission findings, by rule id and action (deny, warn)",
                   ["rule", "action"])
ADMISSION_SECONDS = Histogram(f"{PREFIX}_admission_duration_seconds", "Time to reach an admission decision, "
                              "by how the decision was reached (computed, shared, cached)", ["cache"], buckets=SECONDS)
ADMISSION_CACHE = Counter(f"{PREFIX}_admission_cache_lookups", "Admission cache lookups, by cache (decision: "
                          "the verdict, facts: what was read from the image) and result (computed, shared, cached)",
                          ["cache", "result"])
PHASE_SECONDS = Histogram(f"{PREFIX}_spawn_phase_duration_seconds", "Time spent in each phase of a spawn that "
                          "started (phases as in docs/architecture.md)", ["phase"], buckets=SECONDS)
SPAWNS = Counter(f"{PREFIX}_spawns", "Spawns by outcome: started, denied (refused before anything was created), "
                 "failed (Docker failed after the checks)", ["outcome"])
DENIALS = Counter(f"{PREFIX}_spawn_denials", "Spawns refused, by reason code (image-denied, gpu-busy, ...)", ["reason"])
GPU_RELEASES = Counter(f"{PREFIX}_gpu_releases", "GPU leases freed, by reason", ["reason"])
GPU_RECLAIMS = Counter(f"{PREFIX}_gpu_reclaims", "GPU servers stopped by the reclaim policy, by reason "
                       "(idle, max-age)", ["reason"])
GPU_IDLE_WARNINGS = Counter(f"{PREFIX}_gpu_idle_warnings", "Users warned that their GPU server will be stopped, "
                            "by reason (idle, max-age)", ["reason"])
KEY_LOOKUPS = Counter(f"{PREFIX}_key_store_lookups", "SSH key store lookups, by where (spawn, gateway) and "
                      "outcome (ok, failed)", ["where", "outcome"])
LOGINS = Counter(f"{PREFIX}_logins", "Logins, by where (hub, gateway) and decision (accept, deny, error)",
                 ["where", "decision"])
GATEWAY_FORWARDS = Counter(f"{PREFIX}_gateway_forwards", "SSH gateway channel requests, by decision (allow, deny)",
                           ["decision"])
REVOCATIONS = Counter(f"{PREFIX}_auth_revocations", "Refreshes at the identity provider that revoked a user's "
                      "access, by reason", ["reason"])
REFRESH_FAILURES = Counter(f"{PREFIX}_auth_refresh_failures", "Refreshes that failed without revoking "
                           "(the user logs in again), by reason", ["reason"])
EVENTS = Counter(f"{PREFIX}_audit_events", "Audit records written, by event name", ["event"])

for _decision in ("admit", "deny", "error"):
    ADMISSIONS.labels(_decision, "spawn")
for _outcome in ("started", "denied", "failed"):
    SPAWNS.labels(_outcome)
for _where in ("spawn", "gateway"):
    for _outcome in ("ok", "failed"):
        KEY_LOOKUPS.labels(_where, _outcome)
for _where in ("hub", "gateway"):
    for _decision in ("accept", "deny", "error"):
        LOGINS.labels(_where, _decision)
for _reason in ("idle", "max-age"):
    GPU_RECLAIMS.labels(_reason)
    GPU_IDLE_WARNINGS.labels(_reason)


def _admission(record):
    trigger = record.get("trigger") or "spawn"
    ADMISSIONS.labels(record.get("decision") or "error", trigger).inc()
    for finding in record.get("findings") or ():
        FINDINGS.labels(finding.get("rule", ""), finding.get("action", "")).inc()
    cache = record.get("cache")
    if cache:
        ADMISSION_CACHE.labels("decision", cache).inc()
        ADMISSION_SECONDS.labels(cache).observe(float(record.get("seconds") or 0))
        if cache == "computed" and record.get("facts"):
            ADMISSION_CACHE.labels("facts", record["facts"]).inc()


def _spawn(record):
    SPAWNS.labels("started").inc()
    for phase, seconds in (record.get("phases") or {}).items():
        PHASE_SECONDS.labels(phase).observe(float(seconds))


def _denied(record):
    SPAWNS.labels("denied").inc()
    DENIALS.labels(record.get("reason") or "refused").inc()


def _gateway_auth(record):
    LOGINS.labels("gateway", record.get("decision") or "error").inc()
    if record.get("store"):  # the gateway says how its key store lookup went
        KEY_LOOKUPS.labels("gateway", "ok" if record["store"] == "ok" else "failed").inc()


_BY_EVENT = {
    "admission": _admission,
    "spawn": _spawn,
    "spawn.denied": _denied,
    "spawn.failed": lambda r: SPAWNS.labels("failed").inc(),
    "gpu.release": lambda r: GPU_RELEASES.labels(r.get("reason") or "").inc(),
    "gpu.reclaim": lambda r: GPU_RECLAIMS.labels(r.get("reason") or "").inc(),
    "gpu.idle-warning": lambda r: GPU_IDLE_WARNINGS.labels(r.get("reason") or "").inc(),
    "login": lambda r: LOGINS.labels("hub", "accept").inc(),
    "login.denied": lambda r: LOGINS.labels("hub", "deny").inc(),
    "login.failed": lambda r: LOGINS.labels("hub", "error").inc(),
    "ssh.gateway.auth": _gateway_auth,
    "ssh.gateway.forward": lambda r: GATEWAY_FORWARDS.labels(r.get("decision") or "").inc(),
    "auth.revoked": lambda r: REVOCATIONS.labels(r.get("reason") or "").inc(),
    "auth.refresh.failed": lambda r: REFRESH_FAILURES.labels(r.get("reason") or "").inc(),
}


def observe(record):
    """Count one audit record (an audit sink)."""
    EVENTS.labels(record.get("event", "")).inc()
    count = _BY_EVENT.get(record.get("event"))
    if count is not None:
        count(record)


def key_lookup(where, ok):
    """One SSH key store lookup outside the audit log (a user without keys writes no audit line)."""
    KEY_LOOKUPS.labels(where, "ok" if ok else "failed").inc()


class GpuCollector:
    """GPU gauges read at scrape time from ``pools()``: ``[(pool label, allocator or None), ...]``."""

    def __init__(self, pools):
        self.pools = pools

    def collect(self):
        gpus = GaugeMetricFamily(f"{PREFIX}_gpus", "GPUs in each pool", labels=["pool"])
        leases = GaugeMetricFamily(f"{PREFIX}_gpu_leases", "GPU leases of each pool, by state (held: the server "
                                   "runs, pending: its start is under way)", labels=["pool", "state"])
        free = GaugeMetricFamily(f"{PREFIX}_gpus_free", "GPUs with room for one more server", labels=["pool"])
        holders = GaugeMetricFamily(f"{PREFIX}_gpu_holders", "Servers holding each GPU", labels=["pool", "gpu"])
        for label, allocator in self.pools():
            if allocator is None:
                continue
            held = pending = 0
            for holding in allocator.holdings().values():
                if holding.confirmed:
                    held += 1
                else:
                    pending += 1
            gpus.add_metric([label], len(allocator.gpus))
            leases.add_metric([label, "held"], held)
            leases.add_metric([label, "pending"], pending)
            free.add_metric([label], allocator.free())
            for gpu, users in allocator.usage().items():
                holders.add_metric([label, gpu], len(users))
        return [gpus, leases, free, holders]


class HomeCollector:
    """Watched homes' gauges, read at scrape time from ``homes()``: ``(per_user, [(user, used, quota, level), ...])``
    (level: ok, near or over, as decisions/home_watch.py says).

    The homes by level carry no user name, always; the per-user ratio only with
    ``home_metrics_per_user`` (one series per user with a watched home)."""

    def __init__(self, homes):
        self.homes = homes

    def collect(self):
        per_user, seen = self.homes()
        levels = GaugeMetricFamily(f"{PREFIX}_homes", "Watched homes by their use of the quota at the last look "
                                   "(ok: below 90%, near: 90% or more, over: at or over it)", labels=["level"])
        ratio = GaugeMetricFamily(f"{PREFIX}_home_usage_ratio", "Bytes used / quota of each user's watched home at "
                                  "the last look (home_metrics_per_user)", labels=["user"])
        counts = {"ok": 0, "near": 0, "over": 0}
        for user, used, quota, level in seen:
            counts[level] += 1
            ratio.add_metric([user], used / quota)
        for name, count in counts.items():
            levels.add_metric([name], count)
        return [levels, ratio] if per_user else [levels]


_collectors = {}


def watch_homes(homes):
    """Serve the watched homes' gauges of ``homes()`` (once per process)."""
    if "home" not in _collectors:
        _collectors["home"] = HomeCollector(homes)
        REGISTRY.register(_collectors["home"])


def watch_gpu_pools(pools):
    """Serve the GPU gauges of ``pools()`` (once per process)."""
    if "gpu" not in _collectors:
        _collectors["gpu"] = GpuCollector(pools)
        REGISTRY.register(_collectors["gpu"])
