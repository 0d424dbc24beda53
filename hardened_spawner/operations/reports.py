"""``POST /hub/api/hardened-spawner/events``: audit records forwarded by this package's services.

The SSH gateway (and the SSH keys service) run in processes of their own;
they post their audit records here (:mod:`~..telemetry.forward`) so the
hub counts them in ``/hub/metrics`` and emits them through its event
logger. Only tokens with the scope ``custom:hardened-spawner:report-events``
may post, and only events of those services (``ssh.gateway.*``,
``ssh.keys.*``): a service cannot report a spawn or a login. The records are
in the service's own audit file already; the hub does not write them again.
"""

import json

from jupyterhub.apihandlers import APIHandler
from tornado import web

from .. import telemetry
from ..telemetry.forward import PATH

SCOPE = "custom:hardened-spawner:report-events"
REPORTABLE = ("ssh.gateway.", "ssh.keys.")
MOST = 1000


def accept(records, reporter):
    """``(records to count and emit, number refused)``: only the services' own kinds of event, tagged with the reporter."""
    kept = [{**r, "reporter": reporter} for r in records
            if isinstance(r, dict) and isinstance(r.get("event"), str) and r["event"].startswith(REPORTABLE)]
    return kept, len(records) - len(kept)


class EventReports(APIHandler):
    async def post(self):
        if SCOPE not in self.expanded_scopes:
            raise web.HTTPError(403, f"posting audit records needs the scope {SCOPE}")
        try:
            events = json.loads(self.request.body or b"{}").get("events")
        except (ValueError, AttributeError):
            events = None
        if not isinstance(events, list) or len(events) > MOST:
            raise web.HTTPError(400, f'send {{"events": [record, ...]}} with at most {MOST} records')
        reporter = self.current_user.name
        kept, rejected = accept(events, reporter)
        for record in kept:
            telemetry.hub_sink(record)
        if rejected:
            self.log.warning("%s reported %d audit records that are not its to report", reporter, rejected)
        self.finish({"accepted": len(kept), "rejected": rejected})


def handlers():
    return [(rf"/api{PATH}", EventReports)]
