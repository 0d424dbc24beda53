"""Forward a service's audit records to the hub, which counts them and emits them as events.

The SSH gateway (and any other hub-managed service of this package) runs in
a process of its own: its Prometheus counters would be a second scrape
target and its events would miss the hub's event logger. Instead it writes
its audit file as before and posts each record to the hub
(``POST /hub/api/hardened-spawner/events``, scope
``custom:hardened-spawner:report-events``), which feeds it to the same
metrics and jupyter_events as its own records.

Posting never blocks the service: records wait in a bounded queue (the
oldest are dropped, and counted in the log, when the hub is away for long)
and are sent in batches by a task started with the first record.
"""

import asyncio
import json
import logging
from collections import deque

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

PATH = "/hardened-spawner/events"
_log = logging.getLogger(__name__)


class HubForwarder:
    """An audit sink that posts records to the hub API at ``api_url`` with ``token``."""

    def __init__(self, api_url, token, maxsize=1000, batch=100, retry=(1.0, 30.0), log=None):
        self.url = api_url.rstrip("/") + PATH
        self.token = token
        self.queue = deque(maxlen=maxsize)
        self.batch = batch
        self.retry = retry
        self.log = log or _log
        self.dropped = 0
        self.stopped = False  # the hub refused for good (no such endpoint, no scope)
        self._wake = None
        self._task = None
        self._loop = None

    def __call__(self, record):
        if self.stopped or not self.token:
            return
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(record)
        if self._task is None:
            self._loop = asyncio.get_running_loop()  # sinks run on the service's event loop
            self._wake = asyncio.Event()
            self._task = self._loop.create_task(self.run())
        self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self):
        delay = self.retry[0]
        while not self.stopped:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self.queue[i] for i in range(min(self.batch, len(self.queue)))]
            code = await self._post(batch)
            if code in (200, 204):
                for _ in batch:
                    self.queue.popleft()
                if self.dropped:
                    self.log.warning("%d audit records were not forwarded to the hub (queue full)", self.dropped)
                    self.dropped = 0
                delay = self.retry[0]
            elif code in (403, 404, 405):
                self.stopped = True
                self.log.error("the hub refused audit records (HTTP %s): metrics and events from this service are "
                               "off; give it the scope custom:hardened-spawner:report-events "
                               "(hardened_spawner.operations.hub.configure)", code)
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry[1])

    async def _post(self, batch):
        request = HTTPRequest(self.url, method="POST", body=json.dumps({"events": batch}),
                              headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
                              request_timeout=10)
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as e:
            self.log.info("the hub is unreachable for audit records: %s", e)
            return 599
        if response.code not in (200, 204, 403, 404, 405):
            self.log.info("the hub answered HTTP %s to audit records; retrying", response.code)
        return response.code
