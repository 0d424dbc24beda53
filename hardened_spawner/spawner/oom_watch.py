"""Out-of-memory deaths of one server: found through Docker, remembered until the user has seen them.

Docker keeps ``State.OOMKilled`` on a stopped container; a container it
removed itself (``auto_remove``) leaves only its ``oom`` and ``die`` events.
What is reported is decided in :mod:`..decisions.oom`.
"""

import datetime
import time

from docker.errors import APIError

from ..decisions import oom
from ..decisions.container import LABEL_MEMORY


class OomWatch:
    """``io``: a :class:`~.clients.DockerIO`. ``notice``: the sentence shown at the next visit."""

    def __init__(self, io, log=None):
        self.io = io
        self.log = log
        self.notice = ""
        self._seen = None  # (container id, message) of the last OOM death reported

    @property
    def last_message(self):
        return self._seen[1] if self._seen else None

    async def report(self, container_id, container, orm_spawner):
        """The :class:`~..decisions.oom.OomReport` of a stopped container, or None.

        ``container`` is its inspect output, None when Docker already removed it.
        """
        if container is not None:
            return oom.from_inspect(container, LABEL_MEMORY)
        started = getattr(orm_spawner, "started", None)
        since = started.replace(tzinfo=datetime.timezone.utc).timestamp() if started else time.time() - 86400
        try:
            stream = await self.io("events", since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                                   filters={"container": container_id, "event": ["oom", "die"]})
            events = await self.io.run(list, stream)
        except APIError as e:
            if self.log:
                self.log.warning("could not read Docker events of %s: %s", container_id[:12], e)
            return None
        return oom.from_events(events, LABEL_MEMORY)

    def seen(self, container_id, message, bigger, report):
        """Remember an OOM death; True the first time this container's death is seen."""
        if self._seen and self._seen[0] == container_id:
            return False
        self._seen = (container_id, message)
        self.notice = oom.next_visit_notice(report, bigger)
        return True

    def shown(self):
        """The server started again: the user has seen the notice."""
        self.notice, self._seen = "", None
