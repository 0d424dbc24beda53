"""What the operations page shows of the past: recent admission decisions, each image's latest verdict, denials.

Kept in memory, bounded, fed by the audit sink; after a hub restart the
page fills it once from the tail of the audit file (:meth:`History.backfill`),
taking only records older than this process's first, so none is counted twice.
"""

import datetime
import json
import os
import threading
from collections import OrderedDict, deque

DENIAL_EVENTS = ("spawn.denied",)


def parse_ts(value):
    try:
        when = datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


class History:
    """``admissions``: the newest admission records; ``verdicts``: the latest one per image
    reference; ``denials``: ``(time, reason)`` of refused spawns."""

    def __init__(self, size=200, images=500, denials=20000):
        self._lock = threading.Lock()
        self.admissions = deque(maxlen=size)
        self.verdicts = OrderedDict()
        self.images = images
        self.denials = deque(maxlen=denials)
        self.first_seen = None  # ts of the first record this process wrote
        self.backfilled = False

    def add(self, record):
        with self._lock:
            self._add(record)
            if self.first_seen is None:
                self.first_seen = parse_ts(record.get("ts"))

    def _add(self, record):
        event = record.get("event")
        if event == "admission":
            self.admissions.append(record)
            image = record.get("image")
            if image:
                self.verdicts[image] = record
                self.verdicts.move_to_end(image)
                while len(self.verdicts) > self.images:
                    self.verdicts.popitem(last=False)
        elif event in DENIAL_EVENTS:
            when = parse_ts(record.get("ts"))
            if when is not None:
                self.denials.append((when, record.get("reason") or "refused"))

    def backfill(self, path, max_bytes=4 << 20):
        """Read the audit file's last ``max_bytes`` once: records older than this process's first."""
        with self._lock:
            if self.backfilled or not path:
                return
            self.backfilled = True
            cutoff = self.first_seen
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - max_bytes))
                lines = f.read().splitlines()[1 if size > max_bytes else 0:]  # the first may be cut
        except OSError:
            return
        old = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            when = parse_ts(record.get("ts")) if isinstance(record, dict) else None
            if when is not None and (cutoff is None or when < cutoff):
                old.append(record)
        with self._lock:
            newer = list(self.admissions), list(self.verdicts.items()), list(self.denials)
            self.admissions.clear(), self.verdicts.clear(), self.denials.clear()
            for record in old:
                self._add(record)
            self.admissions.extend(newer[0])
            for image, record in newer[1]:
                self.verdicts[image] = record
                self.verdicts.move_to_end(image)
            self.denials.extend(newer[2])

    def recent_admissions(self, limit=50):
        with self._lock:
            return list(self.admissions)[-limit:][::-1]

    def image_verdicts(self):
        """The latest admission record per image, newest first."""
        with self._lock:
            return list(self.verdicts.values())[::-1]

    def denials_since(self, since):
        with self._lock:
            return [(when, reason) for when, reason in self.denials if when >= since]


HISTORY = History()
