"""What the hub's audit sink (metrics, history, jupyter_events) adds to each audit record (issue 16).

    python3 benchmarks/audit_sink.py --records 20000

Writes the same spawn/admission/denial records through ``AuditLog.write``
(to a file in a temporary directory) three ways: without sinks, with the hub
sink but no event handler (metrics and history only: jupyter_events skips
validation when nothing listens), and with an event handler (every record
validated against its schema and formatted). Prints microseconds per record.
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

from jupyter_events import EventLogger

from hardened_spawner import audit, telemetry
from hardened_spawner.audit import AuditLog
from hardened_spawner.telemetry import events

RECORDS = [
    ("spawn", dict(user="alice", server="", image="img:1", digest="sha256:x", image_id="sha256:x", decision="admit",
                   reasons=[], container="abc", limits={"memory": 1, "cpus": 1.0, "pids": 1, "shm": 1, "gpus": ["0"]},
                   phases={"config": 0.01, "profile": 0.0, "image": 0.05, "admission": 0.2, "keys": 0.01,
                           "gpus": 0.0, "plan": 0.0, "stale": 0.0, "start": 1.2})),
    ("admission", dict(user="alice", server="", image="img:1", digest="sha256:x", decision="deny", cache="cached",
                       facts="cached", policy="p", seconds=0.001,
                       findings=[{"rule": "image.user-root", "severity": "high", "action": "deny", "message": "m",
                                  "remediation": "r"}])),
    ("spawn.denied", dict(user="bob", server="", image="img:1", decision="deny", reason="gpu-busy",
                          reasons=["No GPU is free"])),
]


class Sink(logging.Handler):
    def emit(self, record):
        self.format(record)


def run(log, n):
    started = time.perf_counter()
    for i in range(n):
        event, fields = RECORDS[i % len(RECORDS)]
        log.write(event, **fields)
    return (time.perf_counter() - started) / n * 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20000)
    n = parser.parse_args().records
    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(str(Path(tmp) / "audit.log"))
        plain = run(log, n)
        telemetry.install()
        quiet = run(log, n)  # no hub event logger in this process: metrics and history only
        logger = EventLogger(handlers=[Sink()])
        audit.remove_sink(telemetry.hub_sink)
        audit.add_sink(lambda record: (telemetry.metrics.observe(record), telemetry.HISTORY.add(record),
                                       events.emit(record, logger)))
        emitting = run(log, n)
    print(f"{n} records: {plain:.1f} µs/record without sinks, {quiet:.1f} with metrics and history, "
          f"{emitting:.1f} with events emitted to a handler (+{emitting - plain:.1f} µs)")


if __name__ == "__main__":
    main()
