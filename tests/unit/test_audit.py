import datetime
import json

from hardened_spawner.audit import AuditLog, format_event


def test_format_event_drops_secret_fields():
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    line = format_event("spawn", {"user": "a", "api_token": "x", "env": {"PASSWORD": "p", "HOME": "/h"},
                                  "items": [{"client_secret": "s", "ok": 1}]}, now)
    record = json.loads(line)
    assert record == {"ts": "2026-01-02T03:04:05.000+00:00", "event": "spawn", "user": "a",
                      "env": {"HOME": "/h"}, "items": [{"ok": 1}]}


def test_audit_log_appends_lines(tmp_path):
    path = tmp_path / "audit.log"
    log = AuditLog(str(path))
    log.write("spawn", user="a")
    log.write("stop", user="a")
    events = [json.loads(x)["event"] for x in path.read_text().splitlines()]
    assert events == ["spawn", "stop"]
