"""The login side: the IdP-down page, the access-withdrawn page and refused logins in words.

- :class:`HardenedOAuthLoginHandler`: check the IdP answers before sending
  the browser there; else a clear 503 page.
- :class:`HardenedLoginHandler` (``/hub/login``): a browser whose user had
  their access withdrawn at a refresh sees who withdrew it, when, why and what
  to do (``access-withdrawn.html``) instead of a bare login button.
- :class:`HardenedOAuthCallbackHandler`: a login the allow or block checks
  refuse is a 403 page that says which, reminds the user of an earlier
  withdrawal and gives the reference id of the ``login.denied`` audit line.
"""

import contextvars
import html

from jupyterhub.handlers.login import LoginHandler
from oauthenticator.oauth2 import OAuthCallbackHandler, OAuthLoginHandler
from tornado import web
from tornado.httputil import url_concat

IDP_DOWN = "Identity provider unreachable"  # the error page's heading

# The denials of the login attempt being handled: set per request by the callback
# handler, filled in by the authenticator's allow and block checks.
_attempt = contextvars.ContextVar("hardened_spawner_login_attempt", default=None)


def note_denial(denial):
    """Record a :class:`~..decisions.access.LoginDenial` for the page of the current login attempt."""
    attempt = _attempt.get()
    if attempt is not None:
        attempt.append(denial)


def mark_cookie_request(handler):
    """Work around JupyterHub 6.1.1: after a failed refresh it reads ``_token_authenticated``,
    which it sets only on token-authenticated requests; a cookie request would log a traceback."""
    if handler is not None and not hasattr(handler, "_token_authenticated"):
        handler._token_authenticated = False


class HardenedOAuthLoginHandler(OAuthLoginHandler):
    """Check the IdP answers before sending the browser there; else a clear 503 page.

    The check runs in ``prepare`` (before ``get``), so ``get`` stays OAuthenticator's
    own (state cookie, PKCE, the redirect)."""

    async def prepare(self):
        await super().prepare()
        if self._finished or self.request.method != "GET":
            return
        problem = await self.authenticator.idp_problem()
        if problem:
            self.authenticator.audit.write("login.failed", reason="idp-unreachable", message=problem)
            raise web.HTTPError(503, problem, reason=IDP_DOWN)


class LoginRefused(web.HTTPError):
    """403 for a refused login: the page shows the denial's words and reference id."""

    def __init__(self, denial):
        super().__init__(403, f"login refused ({denial.reason}, ref {denial.ref})",
                         reason="Access withdrawn" if denial.previous else "Access refused")
        e = html.escape
        steps = "".join(f"<li>{e(step)}</li>" for step in denial.todo()[:-1])
        steps += (f'<li>Ask the hub admin and quote reference <strong class="hs-ref">{e(denial.ref)}</strong>: '
                  "it finds this in the audit log.</li>")
        self.jupyterhub_message = denial.notice()
        self.jupyterhub_html_message = (
            f'<div class="hs-login-refused text-start mx-auto" style="max-width: 60rem" '
            f'data-reason="{e(denial.reason)}"><p>You could not log in: {e(denial.why())}.</p>'
            + (f'<p class="hs-history">{e(denial.history())}</p>' if denial.previous else "")
            + f'<p>What you can do:</p><ul class="hs-todo">{steps}</ul></div>')


class HardenedOAuthCallbackHandler(OAuthCallbackHandler):
    """A login refused by the allow or block checks says why, not only 'forbidden'."""

    async def get(self):
        attempt = []
        _attempt.set(attempt)
        try:
            return await super().get()
        except web.HTTPError as e:
            if e.status_code != 403 or not attempt:
                raise
            raise LoginRefused(attempt[-1]) from None


class HardenedLoginHandler(LoginHandler):
    """``/hub/login``: after a withdrawal, say so (who, when, why, what to do) before offering to log in."""

    async def _withdrawal(self):
        if self.current_user is not None:
            return None
        user = self.get_current_user_cookie()  # the browser's hub cookie still names the user
        return await self.authenticator.load_withdrawal(user) if user is not None else None  # kept across restarts

    async def get(self):
        withdrawal = await self._withdrawal()
        if withdrawal is None:
            return await super().get()
        login_url = url_concat(self.authenticator.login_url(self.hub.base_url),
                               {"next": self.get_argument("next", "")})
        self.finish(await self.render_template("access-withdrawn.html", withdrawal=withdrawal,
                                               authenticator_login_url=login_url))
