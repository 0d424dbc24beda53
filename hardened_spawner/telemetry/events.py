"""Audit records as jupyter_events, through the hub's own event logger.

Each family of audit events has a versioned JSON schema in ``schemas/``
(``$id`` ``urn:hardened-spawner:events:<family>``); the schema's ``event``
property (an ``enum`` or a ``pattern``) says which audit events it covers,
so the schema files are the one table. Records are emitted to
``JupyterHub.eventlog``, whose handlers the site configures
(``c.EventLogger.handlers``), with the audit record's own timestamp. The
audit file is written either way.
"""

import datetime
import functools
import logging
import re
import sys
import weakref
from pathlib import Path

from jsonschema import ValidationError
from jupyter_events import yaml

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
_log = logging.getLogger(__name__)
_registered = weakref.WeakSet()  # event loggers our schemas are registered with


@functools.lru_cache(maxsize=1)
def schemas():
    """``{schema $id: (path, matcher)}``; ``matcher(event name)`` says whether the schema covers it."""
    found = {}
    for path in sorted(SCHEMA_DIR.glob("*.yaml")):
        schema = yaml.load(path)
        event = schema["properties"]["event"]
        if "enum" in event:
            names = frozenset(event["enum"])
            matcher = names.__contains__
        else:
            matcher = re.compile(event["pattern"]).search
        found[schema["$id"]] = (path, matcher)
    return found


def schema_for(event):
    """The ``$id`` of the schema covering audit event ``event``, or None."""
    return next((sid for sid, (_, covers) in schemas().items() if covers(event)), None)


def register(eventlog):
    """Register every schema with ``eventlog`` (once per event logger)."""
    if eventlog in _registered:
        return
    for path, _ in schemas().values():
        eventlog.register_event_schema(path)
    _registered.add(eventlog)


def hub_eventlog():
    """The running hub's EventLogger, or None outside a hub (the SSH gateway, the CLI, unit tests)."""
    app = sys.modules.get("jupyterhub.app")
    if app is None or not app.JupyterHub.initialized():
        return None
    return getattr(app.JupyterHub.instance(), "eventlog", None)


def emit(record, eventlog=None):
    """Emit one audit record; returns what was emitted (None: no logger, no handler or no schema)."""
    eventlog = eventlog if eventlog is not None else hub_eventlog()
    if eventlog is None:
        return None
    schema_id = schema_for(record.get("event", ""))
    if schema_id is None:
        _log.debug("no event schema covers audit event %s", record.get("event"))
        return None
    register(eventlog)
    data = {k: v for k, v in record.items() if k != "ts"}
    try:  # naive UTC: jupyter_events appends "Z" to isoformat()
        when = datetime.datetime.fromisoformat(record["ts"]).astimezone(datetime.timezone.utc).replace(tzinfo=None)
    except (KeyError, TypeError, ValueError):
        when = None
    try:
        return eventlog.emit(schema_id=schema_id, data=data, timestamp_override=when)
    except ValidationError as e:
        _log.warning("audit event %s does not match %s: %s", record.get("event"), schema_id, e.message)
        return None
