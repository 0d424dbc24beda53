"""A bounded async cache that computes each key once, however many callers ask at once."""

import asyncio
from collections import OrderedDict


class SingleFlight:
    """``await get(key, compute)`` returns ``(value, how)``, ``how`` being
    ``computed`` (this caller ran ``compute``), ``shared`` (it waited for a
    concurrent caller's run) or ``cached``. Failures are not cached; a caller
    that is cancelled does not cancel the run the others wait for.
    """

    def __init__(self, size=256):
        self.size = size
        self._done = OrderedDict()
        self._running = {}

    def __len__(self):
        return len(self._done)

    async def get(self, key, compute):
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key], "cached"
        task = self._running.get(key)
        how = "shared"
        if task is None:
            task = asyncio.ensure_future(compute())
            self._running[key] = task
            task.add_done_callback(lambda t: self._finish(key, t))
            how = "computed"
        return await asyncio.shield(task), how

    def _finish(self, key, task):
        self._running.pop(key, None)
        if not task.cancelled() and task.exception() is None:
            self._done[key] = task.result()
            self._done.move_to_end(key)
            while len(self._done) > self.size:
                self._done.popitem(last=False)

    def forget(self, match):
        """Drop the finished entries whose key ``match(key)`` accepts (an admin's re-check); returns how many."""
        gone = [key for key in self._done if match(key)]
        for key in gone:
            del self._done[key]
        return len(gone)
