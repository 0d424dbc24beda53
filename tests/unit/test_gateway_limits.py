"""The SSH gateway's per-address limits (hole 9: one client cycling user names starved real logins)."""

from hardened_spawner.ssh.limits import PeerLimits


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_connections_per_address_are_capped_and_released():
    limits = PeerLimits(connections=2)
    assert limits.connect("10.0.0.1") == limits.connect("10.0.0.1") == ""
    assert "more than 2 connections" in limits.connect("10.0.0.1")
    assert limits.connect("10.0.0.2") == ""  # another address is not affected
    limits.disconnect("10.0.0.1")
    assert limits.connect("10.0.0.1") == ""


def test_logins_per_address_are_capped_in_a_sliding_window():
    clock = Clock()
    limits = PeerLimits(logins=3, window=10, clock=clock)
    assert [limits.login("a") for _ in range(3)] == ["", "", ""]
    assert "more than 3 logins in 10 s from a" in limits.login("a")
    assert limits.login("b") == ""
    clock.now = 10.5
    assert limits.login("a") == ""
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


def test_successful_logins_are_forgiven_so_a_shared_address_is_not_throttled():
    limits = PeerLimits(logins=3, window=10, clock=Clock())
    for _ in range(50):  # fifty people behind one NAT address log in
        assert limits.login("nat") == ""
        limits.succeeded("nat")
    assert [limits.login("nat") for _ in range(3)] == ["", "", ""]  # three failures still count
    assert "more than 3 logins" in limits.login("nat")
