"""Structured audit events: one JSON object per line.

Events go to a file (append-only, one line per event) and/or the hub log.
Callers pass facts, never key material or tokens; as a second line of
defence, fields whose names say token, secret or password are dropped.

Sinks (:func:`add_sink`) see every record a process writes, after it is
written: the hub turns them into metrics and jupyter_events
(:mod:`hardened_spawner.telemetry`), a service forwards them to the hub. A
sink that fails is logged and never fails the write.
"""

import datetime
import json
import logging
import os
import re
import threading

_SECRET_FIELD = re.compile(r"token|secret|password|private", re.IGNORECASE)
_lock = threading.Lock()
_sinks = []
_log = logging.getLogger(__name__)


def add_sink(sink):
    """Call ``sink(record)`` with each record (a dict: ``ts``, ``event`` and the fields) written from now on.

    Adding the same sink twice keeps one.
    """
    if sink not in _sinks:
        _sinks.append(sink)


def remove_sink(sink):
    if sink in _sinks:
        _sinks.remove(sink)


def _scrub(value):
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if not _SECRET_FIELD.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def bounded(value, items=10, length=200, depth=2):
    """User input made fit for a log line: at most ``items`` entries, strings cut to ``length``, shallow.

    A request body is whatever the caller sent; this keeps its shape for the
    admin without letting a megabyte or a deep structure into every audit line.
    """
    if isinstance(value, str):
        return value if len(value) <= length else value[:length] + f"...(+{len(value) - length} chars)"
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if depth == 0:
        return f"<{type(value).__name__}>"
    if isinstance(value, dict):
        out = {bounded(str(k), items, 64, 0): bounded(v, items, length, depth - 1)
               for k, v in list(value.items())[:items]}
        if len(value) > items:
            out["..."] = f"{len(value) - items} more keys"
        return out
    if isinstance(value, (list, tuple)):
        out = [bounded(v, items, length, depth - 1) for v in list(value)[:items]]
        return out + ([f"... {len(value) - items} more"] if len(value) > items else [])
    return f"<{type(value).__name__}>"


def format_event(event, fields, now=None):
    """The JSON line for one event; ``ts`` is UTC ISO-8601 with milliseconds."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    record = {"ts": now.isoformat(timespec="milliseconds"), "event": event, **_scrub(fields)}
    return json.dumps(record, sort_keys=True, default=str)


class AuditLog:
    """Write audit events to ``path`` (if set) and to ``logger`` (if set)."""

    def __init__(self, path="", logger=None):
        self.path = path
        self.logger = logger

    def write(self, event, **fields):
        line = format_event(event, fields)
        if self.path:
            with _lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, (line + "\n").encode())
                finally:
                    os.close(fd)
        if self.logger is not None:
            self.logger.info("audit %s", line)
        if _sinks:
            record = json.loads(line)  # what the file holds: plain JSON types, shared by every sink
            for sink in list(_sinks):
                try:
                    sink(record)
                except Exception:
                    _log.exception("audit sink %r failed on %s", sink, event)
        return line

