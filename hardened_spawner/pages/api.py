"""The spawn API's answers to a refusal: status, reason, message, findings and reference id.

JupyterHub 6.1 answers an API error with ``{"status", "message"}`` only, and
the progress stream's failure event with ``message`` (and ``html_message``).
These subclasses of its own handlers add the rest for a
:class:`~..errors.SpawnRefused`; every other answer is JupyterHub's.
"""

import json

from jupyterhub.apihandlers.users import SpawnProgressAPIHandler, UserServerAPIHandler

from ..errors import SpawnRefused


class RefusalServerAPIHandler(UserServerAPIHandler):
    """POST /users/:name/server(s/:server): a refusal before ``slow_spawn_timeout`` is a JSON 4xx/5xx."""

    def write_error(self, status_code, **kwargs):
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if not isinstance(exc, SpawnRefused):
            return super().write_error(status_code, **kwargs)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(exc.as_dict()))


class RefusalProgressAPIHandler(SpawnProgressAPIHandler):
    """The progress stream: a failure event of a refused spawn carries the refusal's fields."""

    _server = None

    async def get(self, user_name, server_name=""):
        self._server = (user_name, server_name or "")
        return await super().get(user_name, server_name)

    def _refusal(self):
        user = self.find_user(self._server[0]) if self._server else None
        spawner = user.spawners.get(self._server[1]) if user else None
        future = spawner._spawn_future if spawner else None
        if future is None or not future.done() or future.cancelled():
            return None
        exc = future.exception()
        return exc if isinstance(exc, SpawnRefused) else None

    async def send_event(self, event):
        refusal = self._refusal() if event.get("failed") else None
        if refusal is not None:
            event = {**refusal.as_dict(), **event}  # JupyterHub's own message ("Spawn failed: ...") kept
        await super().send_event(event)
