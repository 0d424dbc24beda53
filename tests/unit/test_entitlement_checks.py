"""Which users the background re-checks ask about, and when (hardened_spawner.decisions.entitlement_checks)."""

from hardened_spawner.decisions import entitlement_checks as ec
from hardened_spawner.decisions.access import Withdrawal


def test_running_servers_and_recent_ssh_users_are_checked_but_not_the_withdrawn():
    seen = {"ssh-now": 95.0, "ssh-long-ago": 10.0, "gone": 99.0}
    assert ec.candidates(["nb", "gone"], seen, {"gone": object()}, now=100.0, interval=60) == {"nb", "ssh-now"}


def test_each_user_is_due_once_per_interval_never_checked_first():
    checked = {"a": 0.0, "b": 50.0, "c": 95.0}
    assert ec.due(["a", "b", "c", "new"], checked, now=100.0, interval=60, tick=60) == ["new", "a"]
    assert ec.due(["c"], checked, now=100.0, interval=60, tick=6) == []


def test_the_checks_are_spread_over_the_interval():
    users = [f"u{i:04}" for i in range(1000)]  # all due at once (a hub restart)
    first = ec.due(users, {}, now=0.0, interval=300, tick=30)
    assert len(first) == 100 and first == users[:100]
    assert ec.tick_for(300) == 30 and ec.tick_for(5) == 1 and ec.tick_for(3600) == 30


def test_a_withdrawn_users_running_server_is_stopped_again():
    assert ec.still_running(["a", "b"], {"b": object(), "c": object()}) == ["b"]


def test_the_configuration_withdraws_blocked_and_no_longer_allowed_users():
    assert ec.config_refusal(blocked=True, allowed=True) == "blocked"
    assert ec.config_refusal(blocked=False, allowed=False) == "not-allowed"
    assert ec.config_refusal(blocked=False, allowed=True) is None


def test_a_kept_withdrawal_reads_back_and_an_unreadable_one_still_withdraws():
    before = Withdrawal("alice", "no-matching-rule", "out of every group", "2ABC-DEFG", servers_stopped=1)
    again = Withdrawal.from_dict("alice", before.as_dict())
    assert again == before and again.notice() == before.notice()
    broken = Withdrawal.from_dict("alice", {"reason": "no-matching-rule"})
    assert broken.reason == "unreadable" and "withdrawn" in broken.headline()
