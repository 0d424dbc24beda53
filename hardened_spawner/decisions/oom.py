"""Out-of-memory deaths, found in what Docker reports and told in words: pure, no I/O.

Docker 20.10 sets ``State.OOMKilled`` when the kernel's OOM killer struck any
process of the container during its life, and keeps it when the container
exits. A container Docker removed itself (``auto_remove``) leaves only its
``oom`` and ``die`` events, whose attributes carry the container's labels,
including the memory limit label the spawner sets.
"""

import datetime
from dataclasses import dataclass

from ..units import format_bytes

SIGKILL_EXIT = 137  # 128 + SIGKILL: the server process itself was killed


@dataclass(frozen=True)
class OomReport:
    """A container that stopped after the OOM killer struck."""

    memory: int | None  # the memory limit in bytes, when known
    exit_code: int | None
    finished_at: str = ""  # ISO 8601, UTC

    def _limit(self, comma=","):
        return f"{format_bytes(self.memory)}, its memory limit{comma}" if self.memory else "its memory limit"

    def message(self, subject="Your server"):
        """The sentence for the hub log, the audit log and the user."""
        if self.exit_code in (None, SIGKILL_EXIT):
            return f"{subject} used more than {self._limit()} and was stopped by the out-of-memory killer."
        return (f"A process in {subject[0].lower()}{subject[1:]} was killed when the server used more than "
                f"{self._limit(comma='')}; the server then stopped (exit code {self.exit_code}).")

    def as_audit(self):
        return {"memory": self.memory, "exit_code": self.exit_code, "finished_at": self.finished_at}


def _memory(labels, memory_label, fallback=None):
    value = (labels or {}).get(memory_label)
    return int(value) if value and str(value).isdigit() else fallback


def from_inspect(container, memory_label):
    """An :class:`OomReport` from ``inspect_container`` output, or None (running, or no OOM)."""
    state = container.get("State") or {}
    if state.get("Running") or not state.get("OOMKilled"):
        return None
    labels = (container.get("Config") or {}).get("Labels")
    memory = _memory(labels, memory_label, (container.get("HostConfig") or {}).get("Memory") or None)
    finished = state.get("FinishedAt") or ""
    return OomReport(memory=memory, exit_code=state.get("ExitCode"), finished_at=finished[:19] + "Z" if finished else "")


def from_events(events, memory_label):
    """An :class:`OomReport` from a container's Docker events (``oom``, ``die``), or None."""
    oom = next((e for e in events if e.get("Action") == "oom"), None)
    if oom is None:
        return None
    die = next((e for e in events if e.get("Action") == "die"), None)
    attributes = ((die or oom).get("Actor") or {}).get("Attributes") or {}
    code = attributes.get("exitCode")
    when = (die or oom).get("time")
    finished = datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if when else ""
    return OomReport(
        memory=_memory(attributes, memory_label),
        exit_code=int(code) if code is not None and str(code).lstrip("-").isdigit() else None,
        finished_at=finished,
    )


def next_visit_notice(report, bigger=()):
    """What the user reads when they come back: what happened, and what to pick instead.

    ``bigger`` are titles of profiles they may use that have more memory.
    """
    when = f" (stopped {report.finished_at.replace('T', ' ').replace('Z', ' UTC')})" if report.finished_at else ""
    text = report.message(subject=f"Your last server{when}")
    if bigger:
        return f"{text} For more memory pick {', '.join(bigger)}."
    return f"{text} Use less memory, or ask the hub admin for a profile with more."
