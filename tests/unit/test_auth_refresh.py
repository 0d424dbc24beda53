"""HardenedOAuthenticator.refresh_user with canned identity-provider answers (no network).

The real provider is exercised in tests/integration/test_oauth.py; here the
IdP's answers are fixed so every branch of the refresh (still allowed,
removed from every group, refresh token rejected, IdP down, identity
changed) is checked with its audit line and whether servers are stopped.
"""

import asyncio
import io
import json
from types import SimpleNamespace

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse

from hardened_spawner.authenticator import HardenedOAuthenticator

TOKEN_URL = "https://idp.example.org/token"
USERINFO_URL = "https://idp.example.org/userinfo"


class IdP:
    """What the provider answers: a token response, then userinfo claims (or an error)."""

    def __init__(self, claims=None, token_error=None, userinfo_error=None):
        self.claims = claims or {"preferred_username": "alice", "groups": ["staff"]}
        self.token_error = token_error
        self.userinfo_error = userinfo_error
        self.requests = []

    async def httpfetch(self, url, label="", **kwargs):
        self.requests.append(url)
        if url == TOKEN_URL:
            if self.token_error:
                raise self.token_error
            return {"access_token": "new-access", "refresh_token": "new-refresh", "token_type": "Bearer"}
        if self.userinfo_error:
            raise self.userinfo_error
        return dict(self.claims)


def http_error(code, body=b""):
    response = HTTPResponse(HTTPRequest(TOKEN_URL), code, buffer=io.BytesIO(body))
    return HTTPClientError(code, response=response)


class FakeUser:
    def __init__(self, name="alice"):
        self.name = name
        self.spawners = {"": SimpleNamespace(active=True, pending=None)}

    async def get_auth_state(self):
        return {"refresh_token": "old-refresh", "token_response": {"access_token": "old"},
                "oauth_user": {"preferred_username": self.name, "groups": ["staff"]}}


class Handler:
    def __init__(self):
        self.stopped = []

    async def stop_single_user(self, user, name):
        self.stopped.append((user.name, name))


@pytest.fixture
def make(tmp_path):
    def make(idp):
        auth = HardenedOAuthenticator(
            client_id="hub", client_secret="s", token_url=TOKEN_URL, userdata_url=USERINFO_URL,
            authorize_url="https://idp.example.org/authorize", username_claim="preferred_username",
            entitlement_rules=[{"value": "staff", "groups": ["cpu-users"]}],
            audit_log_file=str(tmp_path / "audit.log"))
        auth.httpfetch = idp.httpfetch
        return auth
    return make


def events(tmp_path):
    return [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]


async def settle():
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_still_allowed_refreshes_entitlements(make, tmp_path):
    idp = IdP()
    model = await make(idp).refresh_user(FakeUser(), Handler())
    assert model["name"] == "alice" and model["auth_state"]["entitlements"]["groups"] == ["cpu-users"]
    assert idp.requests == [TOKEN_URL, USERINFO_URL]
    assert events(tmp_path)[-1]["event"] == "auth.refresh"


async def test_removed_from_every_group_is_revoked_and_servers_stop(make, tmp_path):
    auth, handler, user = make(IdP(claims={"preferred_username": "alice", "groups": ["ex-staff"]})), Handler(), FakeUser()
    assert await auth.refresh_user(user, handler) is False
    await settle()
    assert handler.stopped == [("alice", "")]
    line = events(tmp_path)[0]
    assert (line["event"], line["reason"]) == ("auth.revoked", "no-matching-rule")
    assert await auth.refresh_user(user, handler) is False  # remembered: the IdP is not asked again


async def test_rejected_refresh_token_revokes(make, tmp_path):
    idp = IdP(token_error=http_error(400, b'{"error": "invalid_grant", "error_description": "revoked"}'))
    handler = Handler()
    assert await make(idp).refresh_user(FakeUser(), handler) is False
    await settle()
    line = events(tmp_path)[0]
    assert (line["reason"], line["message"]) == ("token-rejected", "the IdP rejected the refresh token: "
                                                 "invalid_grant: revoked")
    assert handler.stopped == [("alice", "")]


@pytest.mark.parametrize("error", [http_error(599), http_error(503), ConnectionRefusedError(111, "refused")])
async def test_idp_down_is_not_a_revocation(make, tmp_path, error):
    handler = Handler()
    assert await make(IdP(token_error=error)).refresh_user(FakeUser(), handler) is False
    await settle()
    assert handler.stopped == []
    line = events(tmp_path)[0]
    assert (line["event"], line["reason"]) == ("auth.refresh.failed", "idp-unreachable")


async def test_identity_changed_revokes(make, tmp_path):
    idp = IdP(claims={"preferred_username": "mallory", "groups": ["staff"]})
    assert await make(idp).refresh_user(FakeUser(), Handler()) is False
    assert events(tmp_path)[0]["reason"] == "identity-changed"


async def test_concurrent_refreshes_share_one_round_trip(make):
    idp = IdP()
    auth, user = make(idp), FakeUser()
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
