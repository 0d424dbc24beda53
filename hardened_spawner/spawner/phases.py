"""The phases of a spawn, in order, and the progress a user sees during each.

One table drives the progress bar, the hub log and the timings the
benchmark reports: every message of a spawn belongs to the phase it is
said in, and each phase's duration is measured from its start to the
next phase's start.
"""

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    name: str
    progress: int  # percent shown while the phase runs
    doc: str


PHASES = (
    Phase("config", 5, "evaluate and check the configuration"),
    Phase("profile", 10, "choose the profile and its image"),
    Phase("image", 15, "resolve, pull and inspect the image"),
    Phase("admission", 25, "check the image against the admission policy"),
    Phase("keys", 30, "fetch and validate the user's SSH keys"),
    Phase("gpus", 35, "allocate the profile's GPUs"),
    Phase("plan", 40, "build the container's create arguments"),
    Phase("stale", 55, "remove a stopped container made under another policy"),
    Phase("start", 60, "create the container, deliver keys and policy files, start it"),
    Phase("wait", 80, "wait for the server's port (ready_wait), before JupyterHub's own HTTP check"),
)
BY_NAME = {p.name: p for p in PHASES}


class Progress:
    """The events of one spawn and how long each phase took.

    ``enter(name)`` starts a phase; ``say(message)`` records a message at
    the current phase's progress and logs it with ``log_name``.
    """

    def __init__(self, log=None, log_name="", clock=time.perf_counter):
        self.log = log
        self.log_name = log_name
        self.clock = clock
        self.events = []
        self.timings = {}
        self.current = None
        self._since = None

    def enter(self, name):
        phase = BY_NAME[name]
        now = self.clock()
        self._close(now)
        self.current, self._since = phase, now
        return phase

    def _close(self, now):
        if self.current is not None:
            name = self.current.name
            self.timings[name] = round(self.timings.get(name, 0.0) + now - self._since, 4)

    def finish(self):
        """End the last phase (its duration counts up to now)."""
        self._close(self.clock())
        self.current = None

    def say(self, message, phase=None):
        progress = BY_NAME[phase].progress if phase else (self.current.progress if self.current else 0)
        self.events.append({"progress": progress, "message": message})
        if self.log is not None:
            self.log.info("%s: %s", self.log_name, message)
