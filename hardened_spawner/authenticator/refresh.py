"""Re-checking a user's access with the identity provider, and revoking it: the one place.

OAuthenticator 17.4's ``refresh_user`` re-reads the user's info but never
re-runs ``check_allowed``, so a user removed from every allowed group at the
IdP kept working. :meth:`RevokingRefresh.recheck_access` asks the IdP again
(refresh-token grant, then userinfo or a verified id_token), rebuilds the auth
model the way a login does (``auth_state_groups_key``,
``modify_auth_state_hook``, entitlement rules, ``manage_groups``), re-runs the
block and allow checks, and answers the model or False. When the IdP revoked
access it records the withdrawal and stops the user's servers.

``refresh_user`` (JupyterHub's call) is this check; the background re-check
(:mod:`.withdrawals`) calls :meth:`recheck_access` too, so a refresh and a
re-check can never disagree, and concurrent ones share one IdP round trip. A
withdrawal is kept in the user's auth_state
(:meth:`~.withdrawals.Withdrawals.persist_withdrawal`), so a hub restart keeps it.
"""

import asyncio
import json

from tornado import web
from tornado.httpclient import HTTPClientError

from ..decisions import access
from ..errors import new_reference
from ..id_tokens import IdTokenInvalid
from ..pages.login import mark_cookie_request


def outage(exc):
    """What went wrong when the IdP did not answer (connection error, timeout, 5xx); None for an answer."""
    if isinstance(exc, HTTPClientError) and exc.code != 599 and exc.code < 500:
        return None
    if isinstance(exc, (HTTPClientError, OSError, asyncio.TimeoutError)):
        return str(exc) or type(exc).__name__
    return None


class RevokingRefresh:
    """``refresh_user`` that re-checks access with the IdP; mixed into HardenedOAuthenticator."""

    async def refresh_user(self, user, handler=None, **kwargs):
        """Ask the IdP again; False (log in again) when it says no, the user is not allowed, or it is down."""
        result = await self.recheck_access(user, handler)
        if result is False:
            mark_cookie_request(handler)
        return result

    async def recheck_access(self, user, handler=None):
        """The user's refreshed auth model, or False when they must log in again.

        In order: a user whose access was withdrawn stays out without asking
        the IdP, until they log in again; ``refresh_user_hook``, when it
        answers (not None), is the answer, as in OAuthenticator; otherwise the
        IdP is asked. Concurrent checks of one user share one round trip, so a
        rotating refresh token is used once. ``handler``: the request being
        served; without one (a background re-check), the hub's own stop is used.
        """
        if await self.load_withdrawal(user) is not None:
            return False
        if self.refresh_user_hook is not None:
            answer = await self._call_refresh_user_hook(user, await user.get_auth_state())
            if answer is False:
                self.audit.write("auth.refresh.failed", user=user.name, reason="refresh-hook",
                                 message="refresh_user_hook answered False")
            if answer is not None:
                return answer
        inflight = self._refreshing.get(user.name)
        if inflight is None:
            inflight = self._refreshing[user.name] = asyncio.ensure_future(self._ask_idp(user, handler))
            inflight.add_done_callback(lambda _: self._refreshing.pop(user.name, None))
        result = await asyncio.shield(inflight)
        return dict(result) if isinstance(result, dict) else result

    async def _ask_idp(self, user, handler):
        self.note_checked(user.name)
        auth_state = await user.get_auth_state()
        if not auth_state:
            return self._revoked(user, handler, "no-auth-state", "no stored login; log in again", stop=False)
        token_info = auth_state.get("token_response") or {}
        refresh_token = auth_state.get("refresh_token")
        try:
            if refresh_token:  # the token endpoint confirms the session (a revoked one is refused there)
                token_info = await self.get_token_info(handler, self.build_refresh_token_request_params(refresh_token))
                token_info.setdefault("refresh_token", refresh_token)
            auth_model = await self._token_to_auth_model(token_info)
        except IdTokenInvalid as e:
            return self._revoked(user, handler, "id-token-invalid", str(e), stop=False)
        except Exception as e:
            down = outage(e)
            if down is not None:
                return self._revoked(user, handler, "idp-unreachable", down, stop=False)
            if not isinstance(e, (HTTPClientError, web.HTTPError)):
                raise
            if refresh_token:  # long-lived: refused means revoked, or the session ended at the IdP
                return self._revoked(user, handler, "token-rejected", f"the IdP rejected the refresh token: {_why(e)}")
            # no refresh token: the access token has most likely just expired
            return self._revoked(user, handler, "token-expired", f"the IdP rejected the access token: {_why(e)}",
                                 stop=False)
        if auth_model["name"] != user.name:
            return self._revoked(user, handler, "identity-changed",
                                 f"the IdP now names this account {auth_model['name']!r}")
        if not super().check_blocked_users(user.name, auth_model):  # the check, without a login denial
            return self._revoked(user, handler, "blocked", "the user is in blocked_users", auth_model)
        if not await self._allowed(user.name, auth_model):
            return self._revoked(user, handler, "no-matching-rule",
                                 "the IdP no longer puts the user in an allowed group", auth_model)
        self.audit.write("auth.refresh", user=user.name, **self._facts(auth_model))
        return auth_model

    def _revoked(self, user, handler, reason, message, auth_model=None, stop=True):
        """Record a failed check and return False; when the IdP revoked access, stop the user's servers."""
        facts = self._facts(auth_model) if auth_model else {}
        self.log.warning("refresh for %s failed (%s): %s; the user must log in again", user.name, reason, message)
        if not stop:
            self.audit.write("auth.refresh.failed", user=user.name, reason=reason, message=message, **facts)
            return False
        stopping = self.servers_to_stop(user)
        withdrawal = self._revoked_users[user.name] = access.Withdrawal(
            user.name, reason, message, new_reference(), servers_stopped=len(stopping))
        self.audit.write("auth.revoked", user=user.name, reason=reason, message=message, ref=withdrawal.ref,
                         notice=withdrawal.notice(), **facts)
        self.stop_servers(user, stopping, reason, handler)
        self.background(self.persist_withdrawal(user, withdrawal))
        return False

    async def recheck(self, user):
        """The background re-check (:mod:`.withdrawals`) is this check too."""
        return await self.recheck_access(user)


def _why(exc):
    """The IdP's own words for an error response (OAuth ``error``/``error_description``), else the exception."""
    body = getattr(getattr(exc, "response", None), "body", None)
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    if isinstance(data, dict) and data.get("error"):
        return f"{data['error']}: {data.get('error_description', '')}".rstrip(": ")
    return str(exc)
