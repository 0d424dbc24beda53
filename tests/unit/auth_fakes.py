"""A canned identity provider and the hub objects refresh_user talks to (no network), for the auth unit tests."""

import asyncio
import io
import json
from types import SimpleNamespace

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
        self.auth_state = {"refresh_token": "old-refresh", "token_response": {"access_token": "old"},
                           "oauth_user": {"preferred_username": name, "groups": ["staff"]}}

    async def get_auth_state(self):
        return dict(self.auth_state)

    async def save_auth_state(self, auth_state):
        self.auth_state = dict(auth_state)


class Handler:
    def __init__(self):
        self.stopped = []

    async def stop_single_user(self, user, name):
        self.stopped.append((user.name, name))


def authenticator(idp, tmp_path):
    """A HardenedOAuthenticator whose IdP answers come from ``idp``, auditing under ``tmp_path``."""
    auth = HardenedOAuthenticator(
        client_id="hub", client_secret="s", token_url=TOKEN_URL, userdata_url=USERINFO_URL,
        authorize_url="https://idp.example.org/authorize", username_claim="preferred_username",
        entitlement_rules=[{"value": "staff", "groups": ["cpu-users"]}],
        audit_log_file=str(tmp_path / "audit.log"))
    auth.httpfetch = idp.httpfetch
    return auth


def events(tmp_path):
    return [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]


async def settle():
    await asyncio.sleep(0)
    await asyncio.sleep(0)


