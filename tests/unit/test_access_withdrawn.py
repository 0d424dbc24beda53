"""Withdrawn access and refused logins, in words (decisions/access.py) and as the authenticator records them.

The pages themselves are exercised in a real browser by tests/e2e/test_browser_refusals.py.
"""

import datetime

import pytest
from tornado import web

from hardened_spawner.decisions.access import LoginDenial, Withdrawal
from hardened_spawner.pages import login as login_pages
from auth_fakes import FakeUser, Handler, IdP, events, settle

AT = datetime.datetime(2026, 12, 2, 14, 2, 59, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))


@pytest.mark.parametrize("reason, why, first", [
    ("no-matching-rule", "no longer in a group that may use this hub", "Ask your identity-provider admin"),
    ("token-rejected", "the identity provider no longer accepts your login", "Log in again."),
    ("identity-changed", "another user name", "Log in again;"),
    ("blocked", "on this hub's block list", "Only the hub admin can lift the block."),
])
def test_each_withdrawal_says_who_when_why_and_what_to_do(reason, why, first):
    w = Withdrawal("alice", reason, "for admins", "K7QM-3XPA", servers_stopped=2, at=AT)
    assert w.when() == "2026-12-02 at 12:02 UTC"  # always UTC, to the minute
    assert w.by == ("the hub admin" if reason == "blocked" else "your identity provider")
    assert why in w.why() and w.todo()[0].startswith(first)
    assert w.todo()[-1] == "Ask the hub admin and quote reference K7QM-3XPA: it finds this in the audit log."
    assert w.notice().startswith(f"Your access to this hub was withdrawn by {w.by} on 2026-12-02 at 12:02 UTC: ")
    assert "Your running servers were stopped." in w.notice() and "for admins" not in w.notice()


def test_a_refused_login_recalls_the_withdrawal():
    before = Withdrawal("alice", "no-matching-rule", "", "K7QM-3XPA", at=AT)
    same = LoginDenial("alice", "no-matching-rule", "2ABC-DEFG", before)
    assert same.history() == ("Your access was withdrawn by your identity provider on 2026-12-02 at 12:02 UTC "
                              "for the same reason (reference K7QM-3XPA).")
    assert same.notice().startswith("You could not log in: your identity-provider account is not in a group")
    assert "2ABC-DEFG" in same.todo()[-1]
    other = LoginDenial("alice", "blocked", "2ABC-DEFG", before)
    assert "because your identity-provider account is no longer in a group" in other.history()
    assert LoginDenial("bob", "blocked", "2ABC-DEFG").history() == ""


async def test_a_revocation_is_remembered_with_its_reference_until_the_next_login(make_auth, tmp_path):
    auth, user = make_auth(IdP(claims={"preferred_username": "alice", "groups": ["ex-staff"]})), FakeUser()
    assert await auth.refresh_user(user, Handler()) is False
    await settle()
    withdrawal = auth.withdrawal("alice")
    [line] = [e for e in events(tmp_path) if e["event"] == "auth.revoked"]
    assert (line["ref"], line["notice"]) == (withdrawal.ref, withdrawal.notice())
    assert withdrawal.servers_stopped == 1 and "Your running server was stopped." in line["notice"]
    await auth.run_post_auth_hook(None, {"name": "alice", "auth_state": {}, "admin": None})
    assert auth.withdrawal("alice") is None


async def test_an_outage_is_not_a_withdrawal(make_auth):
    auth = make_auth(IdP(token_error=ConnectionRefusedError(111, "refused")))
    assert await auth.refresh_user(FakeUser(), Handler()) is False
    assert auth.withdrawal("alice") is None


async def test_a_refused_login_attempt_gets_its_denial_and_a_403_that_says_why(make_auth, tmp_path):
    auth = make_auth(IdP(claims={"preferred_username": "alice", "groups": ["ex-staff"]}))
    assert await auth.refresh_user(FakeUser(), Handler()) is False
    attempt = []
    login_pages._attempt.set(attempt)
    model = {"name": "alice", "auth_state": {"oauth_user": {"groups": ["ex-staff"]}}, "admin": None}
    await auth.update_auth_model(model)
    assert await auth.check_allowed("alice", model) is False
    [denial] = attempt
    line = [e for e in events(tmp_path) if e["event"] == "login.denied"][-1]
    assert (line["ref"], line["reason"], line["notice"]) == (denial.ref, "no-matching-rule", denial.notice())
    assert denial.previous == auth.withdrawal("alice")
    page = login_pages.LoginRefused(denial)
    assert isinstance(page, web.HTTPError) and page.status_code == 403 and page.reason == "Access withdrawn"
    assert f'<strong class="hs-ref">{denial.ref}</strong>' in page.jupyterhub_html_message
    assert denial.previous.ref in page.jupyterhub_html_message


async def test_a_denial_outside_a_login_attempt_is_only_audited(make_auth, tmp_path):
    login_pages._attempt.set(None)
    auth = make_auth(IdP())
    auth.blocked_users = {"mallory"}
    assert auth.check_blocked_users("mallory") is False
    assert [e["reason"] for e in events(tmp_path) if e["event"] == "login.denied"] == ["blocked"]


async def test_a_withdrawal_is_kept_in_auth_state_so_a_restarted_hub_still_refuses(make_auth, tmp_path):
    idp, user = IdP(claims={"preferred_username": "alice", "groups": ["ex-staff"]}), FakeUser()
    user.spawners = {}  # nothing to stop: the stop itself is the hub's (tests/attacks/test_gateway_holes.py)
    assert await make_auth(idp).recheck(user) is False  # a background re-check: no request, no handler
    await settle()
    kept = user.auth_state["hardened_spawner_withdrawn"]
    restarted, asked = make_auth(idp), len(idp.requests)
    withdrawal = await restarted.access_withdrawal(user)
    assert (withdrawal.reason, withdrawal.ref) == ("no-matching-rule", kept["ref"])
    assert await restarted.refresh_user(user, Handler()) is False and len(idp.requests) == asked  # IdP not asked
    await restarted.run_post_auth_hook(None, {"name": "alice", "auth_state": {}, "admin": None})
    assert await restarted.access_withdrawal(user) is None  # a login that passed the checks clears it


async def test_an_outage_at_a_background_re_check_keeps_nothing(make_auth):
    user = FakeUser()
    assert await make_auth(IdP(token_error=ConnectionRefusedError(111, "refused"))).recheck(user) is False
    await settle()
    assert "hardened_spawner_withdrawn" not in user.auth_state
