"""HardenedOAuthenticator.refresh_user with canned identity-provider answers (no network).

The real provider is exercised in tests/integration/test_oauth.py; here the
IdP's answers are fixed so every branch of the refresh (still allowed,
removed from every group, refresh token rejected, IdP down, identity
changed) is checked with its audit line and whether servers are stopped.
"""

import asyncio

import pytest

from auth_fakes import TOKEN_URL, USERINFO_URL, FakeUser, Handler, IdP, events, http_error, settle
from hardened_spawner.authenticator import HardenedOAuthenticator

async def test_still_allowed_refreshes_entitlements(make_auth, tmp_path):
    idp = IdP()
    model = await make_auth(idp).refresh_user(FakeUser(), Handler())
    assert model["name"] == "alice" and model["auth_state"]["entitlements"]["groups"] == ["cpu-users"]
    assert idp.requests == [TOKEN_URL, USERINFO_URL]
    assert events(tmp_path)[-1]["event"] == "auth.refresh"


async def test_removed_from_every_group_is_revoked_and_servers_stop(make_auth, tmp_path):
    auth, handler, user = make_auth(IdP(claims={"preferred_username": "alice", "groups": ["ex-staff"]})), Handler(), FakeUser()
    assert await auth.refresh_user(user, handler) is False
    await settle()
    assert handler.stopped == [("alice", "")]
    line = events(tmp_path)[0]
    assert (line["event"], line["reason"]) == ("auth.revoked", "no-matching-rule")
    assert await auth.refresh_user(user, handler) is False  # remembered: the IdP is not asked again


async def test_rejected_refresh_token_revokes(make_auth, tmp_path):
    idp = IdP(token_error=http_error(400, b'{"error": "invalid_grant", "error_description": "revoked"}'))
    handler = Handler()
    assert await make_auth(idp).refresh_user(FakeUser(), handler) is False
    await settle()
    line = events(tmp_path)[0]
    assert (line["reason"], line["message"]) == ("token-rejected", "the IdP rejected the refresh token: "
                                                 "invalid_grant: revoked")
    assert handler.stopped == [("alice", "")]


@pytest.mark.parametrize("error", [http_error(599), http_error(503), ConnectionRefusedError(111, "refused")])
async def test_idp_down_is_not_a_revocation(make_auth, tmp_path, error):
    handler = Handler()
    assert await make_auth(IdP(token_error=error)).refresh_user(FakeUser(), handler) is False
    await settle()
    assert handler.stopped == []
    line = events(tmp_path)[0]
    assert (line["event"], line["reason"]) == ("auth.refresh.failed", "idp-unreachable")


async def test_identity_changed_revokes(make_auth, tmp_path):
    idp = IdP(claims={"preferred_username": "mallory", "groups": ["staff"]})
    assert await make_auth(idp).refresh_user(FakeUser(), Handler()) is False
    assert events(tmp_path)[0]["reason"] == "identity-changed"


async def test_concurrent_refreshes_share_one_round_trip(make_auth):
    idp = IdP()
    auth, user = make_auth(idp), FakeUser()
    results = await asyncio.gather(*(auth.refresh_user(user, Handler()) for _ in range(5)))
    assert all(r["name"] == "alice" for r in results)
    assert idp.requests == [TOKEN_URL, USERINFO_URL]  # a rotating refresh token is used once


@pytest.fixture
def generic(tmp_path):
    """A GenericOAuthenticator configuration, no entitlement rules: access by allowed_groups."""
    def generic(idp, **settings):
        auth = HardenedOAuthenticator(
            client_id="hub", client_secret="s", token_url=TOKEN_URL, userdata_url=USERINFO_URL,
            authorize_url="https://idp.example.org/authorize", username_claim="preferred_username",
            manage_groups=True, allowed_groups={"staff"}, audit_log_file=str(tmp_path / "audit.log"), **settings)
        auth.httpfetch = idp.httpfetch
        return auth
    return generic


async def test_without_rules_refresh_rereads_groups_and_revokes_a_user_out_of_allowed_groups(generic, tmp_path):
    idp = IdP(claims={"preferred_username": "alice", "groups": ["staff", "ml"]})
    auth, handler = generic(idp), Handler()
    model = await auth.refresh_user(FakeUser(), handler)
    assert model["groups"] == ["ml", "staff"]
    idp.claims = {"preferred_username": "alice", "groups": ["ml"]}  # removed from the allowed group
    assert await auth.refresh_user(FakeUser(), handler) is False
    await settle()
    assert handler.stopped == [("alice", "")]
    [line] = [e for e in events(tmp_path) if e["event"] == "auth.revoked"]
    assert (line["reason"], line["idp_groups"]) == ("no-matching-rule", ["ml"]) and "entitlements" not in line


@pytest.mark.parametrize("answer", [True, False, {"name": "alice", "admin": None, "auth_state": {}}])
async def test_refresh_user_hook_that_answers_is_the_answer(generic, tmp_path, answer):
    """As in OAuthenticator: the hook's answer replaces the refresh (the IdP is not asked)."""
    idp, seen = IdP(), []

    def hook(authenticator, user, auth_state):
        seen.append((user.name, auth_state["refresh_token"]))
        return answer

    assert await generic(idp, refresh_user_hook=hook).refresh_user(FakeUser(), Handler()) == answer
    assert seen == [("alice", "old-refresh")] and idp.requests == []
    if answer is False:
        assert events(tmp_path)[-1]["reason"] == "refresh-hook"


async def test_refresh_user_hook_answering_none_leaves_the_check_to_the_idp(generic):
    async def hook(authenticator, user, auth_state):
        return None

    idp = IdP(claims={"preferred_username": "alice", "groups": ["visitors"]})
    assert await generic(idp, refresh_user_hook=hook).refresh_user(FakeUser(), Handler()) is False
    assert idp.requests == [TOKEN_URL, USERINFO_URL]
