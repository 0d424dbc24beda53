"""What operators watch: Prometheus metrics, jupyter_events and the recent history of decisions.

Every decision the hub makes is already an audit record
(:class:`~hardened_spawner.audit.AuditLog`); :func:`hub_sink` turns each one
into metrics (:mod:`.metrics`), an event for the hub's event logger
(:mod:`.events`) and the history the operations page shows (:mod:`.history`).
:func:`install` adds it to the hub process once. Services in processes of
their own forward their records to the hub instead (:mod:`.forward`).
"""

from .. import audit
from . import events, metrics
from .history import HISTORY


def hub_sink(record):
    """Count, remember and emit one audit record (the hub's audit sink)."""
    metrics.observe(record)
    HISTORY.add(record)
    events.emit(record)


def install():
    """Turn this process's audit records into metrics, events and history (idempotent)."""
    audit.add_sink(hub_sink)
