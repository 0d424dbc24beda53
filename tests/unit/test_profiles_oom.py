"""OOM reports in words, from container state and from Docker events."""

from hardened_spawner.decisions import oom

LABEL = "hardened-spawner.memory-limit"
GIB = 1024**3


def state(**kw):
    base = {"Running": False, "OOMKilled": True, "ExitCode": 137, "FinishedAt": "2026-11-25T00:28:11.808128479Z"}
    return {"State": {**base, **kw}, "Config": {"Labels": {LABEL: str(16 * GIB)}}, "HostConfig": {"Memory": GIB}}


def test_server_killed_by_the_oom_killer():
    report = oom.from_inspect(state(), LABEL)
    assert report == oom.OomReport(memory=16 * GIB, exit_code=137, finished_at="2026-11-25T00:28:11Z")
    assert report.message() == ("Your server used more than 16 GiB, its memory limit, "
                                "and was stopped by the out-of-memory killer.")


def test_a_process_killed_then_the_server_exited():
    report = oom.from_inspect(state(ExitCode=1), LABEL)
    assert report.message() == ("A process in your server was killed when the server used more than "
                                "16 GiB, its memory limit; the server then stopped (exit code 1).")


def test_no_report_while_running_or_without_oom():
    assert oom.from_inspect(state(Running=True), LABEL) is None
    assert oom.from_inspect(state(OOMKilled=False), LABEL) is None


def test_memory_from_host_config_when_the_label_is_missing():
    container = state()
    container["Config"]["Labels"] = {}
    assert oom.from_inspect(container, LABEL).memory == GIB
    container["HostConfig"]["Memory"] = 0
    assert oom.from_inspect(container, LABEL).message().startswith("Your server used more than its memory limit and")


def test_from_events_of_an_auto_removed_container():
    events = [
        {"Action": "start", "time": 1764030000},
        {"Action": "oom", "time": 1764030090, "Actor": {"Attributes": {LABEL: str(256 * 1024**2)}}},
        {"Action": "die", "time": 1764030091,
         "Actor": {"Attributes": {LABEL: str(256 * 1024**2), "exitCode": "137"}}},
    ]
    report = oom.from_events(events, LABEL)
    assert report == oom.OomReport(memory=256 * 1024**2, exit_code=137, finished_at="2025-11-25T00:21:31Z")
    assert oom.from_events(events[:1] + events[2:], LABEL) is None  # died, but not of OOM
    assert oom.from_events(events[:2], LABEL).exit_code is None  # the die event rolled out of the buffer


def test_next_visit_notice_says_what_to_pick():
    report = oom.OomReport(memory=4 * GIB, exit_code=137, finished_at="2026-11-25T00:28:11Z")
    assert oom.next_visit_notice(report, ["'large' (Large: 4 CPUs, 16 GiB)"]) == (
        "Your last server (stopped 2026-11-25 00:28:11 UTC) used more than 4 GiB, its memory limit, and was "
        "stopped by the out-of-memory killer. For more memory pick 'large' (Large: 4 CPUs, 16 GiB).")
    assert oom.next_visit_notice(oom.OomReport(None, 1)).endswith(
        "the server then stopped (exit code 1). Use less memory, or ask the hub admin for a profile with more.")
    assert oom.next_visit_notice(oom.OomReport(None, 1)).startswith("A process in your last server was killed")
