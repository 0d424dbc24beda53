"""The SSH gateway's per-address limits, and that none of them can be used against others.

Hole 9: one client cycling user names starved real logins. Then (issue 20): ten idle sockets from one
address locked every user behind that address (a NAT) out, and failed logins of one client there
throttled everyone else there.
"""

import pytest

from hardened_spawner.ssh.connection import AUTHENTICATING, DOOMED, ENCRYPTED, KEY_EXCHANGE, SILENT
from hardened_spawner.ssh.limits import REMEMBER_SECONDS, PeerLimits, parse_startups, refuse_chance


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def arrive(limits, peer, conn, progress, clock=None, at=None):
    """Admit ``conn`` (its progress in the dict ``progress``); returns the connections closed for it."""
    if clock is not None and at is not None:
        clock.now = at
    progress.setdefault(conn, SILENT)
    closed, _ = limits.arrive(peer, conn, progress.get)
    for c in closed:
        del progress[c]
    return closed


def test_a_new_connection_at_the_cap_is_let_in_and_the_one_that_got_least_far_is_closed_oldest_first():
    clock, progress = Clock(), {}
    limits = PeerLimits(pending=4, clock=clock)
    for at, (conn, stage) in enumerate([("logging-in", AUTHENTICATING), ("idle-1", SILENT), ("kex", KEY_EXCHANGE),
                                        ("idle-2", SILENT)]):
        progress[conn] = stage
        assert arrive(limits, "nat", conn, progress, clock, at) == []
    assert arrive(limits, "nat", "new-1", progress, clock, 10) == ["idle-1"]  # never refused: room is made
    assert arrive(limits, "nat", "new-2", progress, clock, 11) == ["idle-2"]
    assert arrive(limits, "nat", "new-3", progress, clock, 12) == ["new-1"]   # oldest of the silent ones
    progress["doomed"] = DOOMED  # throttled, or no key to check: it can no longer log in
    limits.arrive("nat", "doomed", progress.get)
    assert arrive(limits, "nat", "new-4", progress, clock, 13) == ["doomed"]
    assert arrive(limits, "elsewhere", "other", progress, clock, 14) == []  # another address is not affected
    assert set(progress) - {"other", "new-4"} == {"logging-in", "kex", "new-2", "new-3"}


def test_thirty_idle_sockets_reopened_in_a_loop_never_close_a_client_that_is_logging_in():
    clock, progress = Clock(), {}
    limits = PeerLimits(pending=10, clock=clock)
    idle = [f"idle-{i}" for i in range(30)]
    for i, conn in enumerate(idle):
        arrive(limits, "nat", conn, progress, clock, i)
    progress["alice"] = ENCRYPTED
    assert arrive(limits, "nat", "alice", progress, clock, 30) == [idle[20]]
    progress["alice"] = AUTHENTICATING
    for n in range(1000):  # every closed idle socket is opened again at once
        closed = arrive(limits, "nat", f"again-{n}", progress, clock, 31 + n)
        assert closed and "alice" not in closed
    assert "alice" in progress
    assert limits.authenticated("nat", "alice", "alice") == ""


def test_logged_in_connections_count_per_user_not_per_address():
    limits = PeerLimits(pending=2, sessions=3)
    progress = {}
    for i in range(40):  # forty users behind one address, more than its pending cap, all logged in at once
        conn = f"c{i}"
        progress[conn] = AUTHENTICATING
        assert arrive(limits, "nat", conn, progress) == []
        assert limits.login("nat", f"user{i}", conn) == ""
        assert limits.authenticated("nat", conn, f"user{i}") == ""
    assert [limits.authenticated("nat", f"b{i}", "bob") for i in range(3)] == ["", "", ""]
    assert "bob has 3 SSH connections through the gateway open already" == limits.authenticated("nat", "b3", "bob")
    assert limits.authenticated("nat", "carol-1", "carol") == ""  # bob's connections limit no one else
    limits.leave("nat", "b0", "bob")
    assert limits.authenticated("nat", "b4", "bob") == ""


def test_failed_logins_per_address_are_capped_in_a_sliding_window():
    clock = Clock()
    limits = PeerLimits(logins=3, window=10, clock=clock)
    assert [limits.login("a", f"u{i}", i) for i in range(3)] == ["", "", ""]
    assert "more than 3 failed logins in 10 s from a" in limits.login("a", "u3", 3)
    assert limits.login("b", "u4", 4) == ""
    clock.now = 10.5
    assert limits.login("a", "u5", 5) == ""
    clock.now = 100
    limits.forget_idle()
    assert "a" not in limits._attempts


def test_the_hubs_access_answer_for_the_gateway():
    """Hole 10: what the gateway is told about a blocked or revoked user (pages/access.py)."""
    import datetime

    from hardened_spawner.decisions.access import Withdrawal
    from hardened_spawner.pages.access import verdict

    assert verdict("alice", False, None) == {"user": "alice", "allowed": True, "reason": "", "since": None}
    assert verdict("bob", True, None)["reason"] == "blocked by the hub admin"
    gone = Withdrawal("carol", "no-matching-rule", "", "AB12-CD34",
                      at=datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.timezone.utc))
    answer = verdict("carol", False, gone)
    assert not answer["allowed"] and answer["reason"].startswith("access withdrawn by your identity provider")
    assert answer["since"].startswith("2026-12-01")
    unlisted = verdict("dave", False, Withdrawal("dave", "not-allowed", "by the hub's configuration", "hub-configuration"))
    assert unlisted == {"user": "dave", "allowed": False, "since": None, "reason": (
        "access withdrawn by the hub admin: your account is no longer on this hub's list of allowed users")}


def test_successful_logins_are_forgiven_so_a_shared_address_is_not_throttled():
    limits = PeerLimits(logins=3, window=10, clock=Clock())
    for i in range(50):  # fifty people behind one NAT address log in for the first time
        assert limits.login("nat", f"user{i}", i) == ""
        assert limits.authenticated("nat", i, f"user{i}") == ""
    assert [limits.login("nat", f"x{i}", f"x{i}") for i in range(3)] == ["", "", ""]  # three failures still count
    assert "more than 3 failed logins" in limits.login("nat", "x3", "x3")


def test_someone_spending_the_addresss_budget_cannot_lock_out_users_who_logged_in_before():
    clock = Clock()
    limits = PeerLimits(logins=3, window=60, clock=clock)
    for i, user in enumerate(["alice", "bob"]):  # earlier, from anywhere
        assert limits.login("home", user, f"earlier-{i}") == ""
        limits.authenticated("home", f"earlier-{i}", user)
    clock.now = 3600
    for i in range(3):  # mallory, behind the NAT, fails logins under made-up names
        assert limits.login("nat", f"guess{i}", f"m{i}") == ""
    assert "more than 3 failed logins" in limits.login("nat", "guess3", "m3")
    assert "more than 3 failed logins" in limits.login("nat", "carol", "carol-1")  # a first login waits
    assert limits.login("nat", "alice", "a1") == "" and limits.login("nat", "bob", "b1") == ""
    assert limits.authenticated("nat", "a1", "alice") == ""
    assert "more than 3 failed logins" in limits.login("nat", "guess4", "m4")  # alice forgave none of mallory's
    clock.now = 3 + REMEMBER_SECONDS  # bob's last login was 30 days ago (alice's less)
    limits.forget_idle()
    assert [limits.login("nat", f"guess{i}", f"n{i}") for i in range(3)] == ["", "", ""]
    assert "more than 3 failed logins" in limits.login("nat", "bob", "b2")  # remembered for 30 days
    assert limits.login("nat", "alice", "a2") == ""


def test_closed_connections_are_reported_once_per_window_with_their_number():
    clock, progress = Clock(), {}
    limits = PeerLimits(pending=1, window=60, clock=clock)
    reports = []
    for n in range(5):
        progress[n] = SILENT
        reports.append(limits.arrive("nat", n, progress.get)[1])
    assert reports == [0, 1, 0, 0, 0]  # the first drop at once, the next ones counted
    assert limits.due_reports() == {}
    clock.now = 61
    assert limits.due_reports() == {"nat": 3}
    assert limits.due_reports() == {}


def test_startups_are_read_as_sshd_reads_max_startups():
    assert parse_startups("10:30:100") == (10, 30, 100)
    assert parse_startups("20") == (20, 100, 20)
    for bad in ("", "10:30", "0:30:100", "30:30:10", "10:0:100", "10:101:100", "a:b:c", "10:30:100:1"):
        with pytest.raises(ValueError, match="start:rate:full"):
            parse_startups(bad)


def test_the_chance_of_refusal_rises_linearly_from_start_to_full():
    chances = [refuse_chance(n, 10, 30, 100) for n in (0, 9, 10, 55, 99, 100, 500)]
    assert chances == pytest.approx([0, 0, 0.3, 0.65, 0.3 + 0.7 * 89 / 90, 1, 1])
    assert [refuse_chance(n, 5, 100, 5) for n in (4, 5)] == [0, 1]


def test_all_pending_connections_together_follow_max_startups_random_early_drop():
    draws = iter([0.5, 0.2, 0.99, 0.0])  # then 0.999
    clock, progress = Clock(), {}
    limits = PeerLimits(pending=2, startups=(4, 30, 8), clock=clock, chance=lambda: next(draws, 0.999))
    for i in range(4):  # four addresses, one connection each: below start, nothing is drawn
        assert arrive(limits, f"p{i}", f"c{i}", progress, clock, i) == []
    assert arrive(limits, "p4", "c4", progress, clock, 4) == []  # 30 % at start (4); drew 0.5: let in
    assert arrive(limits, "p5", "c5", progress, clock, 5) == ["c5"]  # 47.5 % at 5; drew 0.2: refused
    assert arrive(limits, "p5", "c6", progress, clock, 6) == []  # drew 0.99
    assert arrive(limits, "p0", "c7", progress, clock, 7) == ["c7"]  # 65 % at 6; drew 0.0
    assert arrive(limits, "p0", "c8", progress, clock, 8) == []  # drew 0.999
    assert limits.total_pending() == 7
    assert arrive(limits, "p0", "c9", progress, clock, 9) == ["c0"]  # p0 at its cap: takes its own place, no draw
    assert arrive(limits, "p6", "c10", progress, clock, 10) == []  # 82.5 % at 7; drew 0.999
    assert arrive(limits, "p7", "c11", progress, clock, 11) == ["c11"]  # full (8): every new address is refused
    assert arrive(limits, "p0", "c12", progress, clock, 12) == ["c8"]  # but an address at its cap still gets in
    assert limits.total_pending() == 8
    limits.leave("p1", "c1")
    assert limits.total_pending() == 7
