"""HardenedOAuthenticator: identity-provider claims become entitlements, and refresh revokes.

Closes three gaps of OAuthenticator 17.4 / JupyterHub 6.1:

- ``refresh_user`` never re-ran ``check_allowed``: a user removed from every
  allowed group at the IdP kept working. Here every refresh asks the IdP
  again (refresh-token grant, then userinfo or a verified id_token), re-runs
  the allow and block checks, and returns False when the IdP says no.
- ``userdata_from_id_token`` decoded the id_token without checking its
  signature. Here it is verified against the provider's JWKS, with
  audience, issuer and expiry.
- ``auth_refresh_strict`` defaulted to False; here it is True, with
  ``enable_auth_state`` and ``manage_groups``.

Entitlements (hub groups, profiles, GPU quota, images, admin) are computed
by :mod:`.entitlements` at login and on every refresh and kept in
auth_state. Audit lines never carry tokens.
"""

import asyncio
import json

from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthLoginHandler
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Bool, Float, List, TraitError, Unicode, default, validate

from . import telemetry
from .audit import AuditLog
from .decisions import entitlements
from .id_tokens import IdTokenInvalid, IdTokenVerifier

_DOWN = "Identity provider unreachable"  # the error page's heading


def _outage(exc):
    """What went wrong when the IdP did not answer (connection error, timeout, 5xx); None for an answer."""
    if isinstance(exc, HTTPClientError) and exc.code != 599 and exc.code < 500:
        return None
    if isinstance(exc, (HTTPClientError, OSError, asyncio.TimeoutError)):
        return str(exc) or type(exc).__name__
    return None


class HardenedOAuthLoginHandler(OAuthLoginHandler):
    """Check the IdP answers before sending the browser there; else a clear 503 page."""

    async def get(self):
        problem = await self.authenticator.idp_problem()
        if problem:
            self.authenticator.audit.write("login.failed", reason="idp-unreachable", message=problem)
            raise web.HTTPError(503, problem, reason=_DOWN)
        return super().get()


class HardenedOAuthenticator(GenericOAuthenticator):
    """GenericOAuthenticator with IdP-driven entitlements, revoking refresh and verified id_tokens."""

    login_handler = HardenedOAuthLoginHandler

    entitlement_rules = List(
        config=True,
        help="""Rules that turn identity-provider claims into entitlements.

        Each rule is a dict: ``claim`` (a claim name or dotted path, default
        ``idp_groups_claim``) and ``value`` (what that claim must equal or
        contain) select users; ``groups`` (hub groups, which gate profiles),
        ``profiles`` (profile slugs), ``gpus`` (most GPUs per server),
        ``images`` (image names) and ``admin`` (True/False) are granted.
        A user gets the union of every rule they match and the largest GPU
        quota; a user who matches no rule (and is not in ``allowed_users``
        or ``admin_users``) cannot log in, and loses access at the next
        refresh. Example::

            [{"value": "ml-gpu", "groups": ["gpu-users"], "gpus": 1},
             {"value": "staff", "groups": ["cpu-users"]},
             {"value": "hub-admins", "admin": True},
             {"claim": "realm_access.roles", "value": "jupyter", "groups": ["cpu-users"]}]
        """,
    ).tag(allow_config=True)
    idp_groups_claim = Unicode(
        "groups", config=True,
        help="""Claim (or dotted path, e.g. ``realm_access.roles``) that holds the user's IdP groups.

        Rules without a ``claim`` match against it, and audit lines list its values.""",
    )
    jwks_url = Unicode(
        "", config=True,
        help="""The provider's JSON Web Key Set URL (``jwks_uri`` in its discovery document).

        Required with ``userdata_from_id_token``: every id_token's signature is
        verified against these keys.""",
    )
    id_token_issuer = Unicode(
        "", config=True,
        help="""The ``iss`` every id_token must carry (``issuer`` in the discovery document).

        Required with ``userdata_from_id_token``.""",
    )
    id_token_algorithms = List(
        Unicode(), ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"],
        config=True,
        help="""Signature algorithms accepted for id_tokens. ``none`` and HMAC (HS*) are never accepted.""",
    )
    id_token_leeway = Float(30.0, config=True, help="Seconds of clock skew allowed when checking id_token times.")
    idp_timeout = Float(
        10.0, config=True,
        help="""Seconds to wait for the identity provider before saying it is down.

        Applies to every request to the IdP (token, userinfo, JWKS) and to the
        reachability check made before the browser is sent there, so a user never
        lands on a browser error page.""",
    )
    stop_servers_on_revoke = Bool(
        True, config=True,
        help="""Stop the user's running servers when a refresh finds their access revoked.

        Revoked means the IdP answered: the refresh token was rejected, or the user
        is no longer allowed or is blocked. An IdP outage never stops servers.""",
    )
    audit_log_file = Unicode(
        "", config=True,
        help="""File that receives one JSON line per login, denial, refresh and revocation.

        Lines carry the user, IdP groups, entitlements and reasons, never tokens.
        Use the same file as ``HardenedDockerSpawner.audit_log_file`` for one trail.""",
    )
    audit_to_hub_log = Bool(True, config=True, help="Also write audit lines to the hub log (INFO).")

    @default("manage_groups")
    def _manage_groups_default(self):
        return True

    @default("enable_auth_state")
    def _enable_auth_state_default(self):
        return True

    @default("auth_refresh_strict")
    def _auth_refresh_strict_default(self):
        return True

    @default("enable_pkce")
    def _enable_pkce_default(self):
        return True

    @default("http_request_kwargs")
    def _http_request_kwargs_default(self):
        return {"connect_timeout": self.idp_timeout, "request_timeout": self.idp_timeout}

    @default("login_service")
    def _login_service_default(self):
        return "your identity provider"

    @default("custom_403_message")
    def _custom_403_default(self):
        return ("Your identity-provider account is not in a group that may use this hub. "
                "Ask the hub admin to grant you access, then log in again.")

    @validate("entitlement_rules")
    def _validate_rules(self, proposal):
        rules, problems = entitlements.parse_rules(
            f"{type(self).__name__}.entitlement_rules", proposal.value, self.idp_groups_claim)
        if problems:
            raise TraitError("; ".join(f"{s}: {m}" for s, m in problems))
        return proposal.value

    @validate("id_token_algorithms")
    def _validate_algorithms(self, proposal):
        bad = [a for a in proposal.value if a.lower() == "none" or a.upper().startswith("HS")]
        if bad:
            raise TraitError(f"id_token_algorithms may not include {', '.join(bad)}: "
                             "'none' is unsigned and HMAC keys are the client secret")
        return proposal.value

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.userdata_from_id_token and not (self.jwks_url and self.id_token_issuer):
            raise ValueError(
                f"{type(self).__name__}.userdata_from_id_token needs jwks_url and id_token_issuer "
                "(the provider's jwks_uri and issuer) so id_token signatures can be verified")
        self._id_tokens = None
        self._refreshing = {}
        self._revoked_users = set()  # revoked by the IdP; cleared by their next login
        self._tasks = set()

    @property
    def rules(self):
        return entitlements.parse_rules("", self.entitlement_rules, self.idp_groups_claim)[0]

    @property
    def audit(self):
        telemetry.install()  # the hub's records become metrics and events
        return AuditLog(self.audit_log_file, self.log if self.audit_to_hub_log else None)

    # ---- IdP reachability ----------------------------------------------------
    async def idp_problem(self):
        """None when the IdP answers at all; else the sentence for the error page."""
        try:
            await self.httpfetch(self.authorize_url, "checking the identity provider", parse_json=False,
                                 raise_error=False, method="GET", request_timeout=self.idp_timeout,
                                 connect_timeout=self.idp_timeout, follow_redirects=False)
        except Exception as e:  # noqa: BLE001 - any failure to get an HTTP answer means down
            self.log.warning("identity provider at %s unreachable: %s", self.authorize_url, e)
            return (f"The identity provider ({_origin(self.authorize_url)}) cannot be reached, so you cannot "
                    "log in right now. Try again in a few minutes; if it persists, tell the hub admin.")
        return None

    # ---- id_token verification -------------------------------------------------
    @property
    def id_tokens(self):
        """The :class:`~.id_tokens.IdTokenVerifier` (one per authenticator: it caches the JWKS)."""
        if self._id_tokens is None:
            async def fetch_jwks():
                return await self.httpfetch(self.jwks_url, "fetching the provider's JWKS", method="GET",
                                            request_timeout=self.idp_timeout)

            self._id_tokens = IdTokenVerifier(fetch_jwks, self.jwks_url, self.client_id, self.id_token_issuer,
                                              self.id_token_algorithms, self.id_token_leeway)
        return self._id_tokens

    async def verify_id_token(self, id_token):
        """The id_token's claims, after checking signature, algorithm, audience, issuer and times."""
        return await self.id_tokens.verify(id_token)

    async def token_to_user(self, token_info):
        if not self.userdata_from_id_token:
            return await super().token_to_user(token_info)
        id_token = token_info.get("id_token")
        if not id_token:
            raise IdTokenInvalid("the token response carries no id_token")
        return await self.verify_id_token(id_token)

    # ---- entitlements ---------------------------------------------------------
    def _claims(self, auth_state):
        return (auth_state or {}).get(self.user_auth_state_key) or {}

    async def update_auth_model(self, auth_model):
        """Compute entitlements from the claims; put them in auth_state; set admin if the IdP manages it."""
        rules = self.rules
        claims = self._claims(auth_model["auth_state"])
        ent = entitlements.evaluate(rules, claims)
        auth_model["auth_state"][entitlements.AUTH_STATE_KEY] = ent.as_dict()
        if auth_model["admin"] is None and entitlements.manages_admin(rules):
            auth_model["admin"] = ent.admin
        return auth_model

    async def get_user_groups(self, auth_state):
        return set(entitlements.from_auth_state(auth_state).groups)

    def _facts(self, auth_model):
        """Audit fields for one auth model: IdP groups and entitlements, never tokens."""
        auth_state = auth_model.get("auth_state") or {}
        ent = entitlements.from_auth_state(auth_state) or entitlements.Entitlements()
        return {"idp_groups": entitlements.claim_values(self._claims(auth_state), self.idp_groups_claim),
                "entitlements": ent.as_dict(), "admin": auth_model.get("admin")}

    async def _allowed(self, username, auth_model):
        if self.allow_all or await super().check_allowed(username, auth_model):
            return True
        ent = entitlements.from_auth_state(auth_model.get("auth_state"))
        return bool(ent and ent.allowed)

    async def check_allowed(self, username, auth_model):
        allowed = await self._allowed(username, auth_model)
        if not allowed:
            self.audit.write("login.denied", user=username, reason="no-matching-rule", **self._facts(auth_model))
        return allowed

    def check_blocked_users(self, username, authentication=None):
        passed = super().check_blocked_users(username, authentication)
        if not passed:
            self.audit.write("login.denied", user=username, reason="blocked")
        return passed

    async def run_post_auth_hook(self, handler, authentication):
        authentication = await super().run_post_auth_hook(handler, authentication)
        self._revoked_users.discard(authentication["name"])
        self.audit.write("login", user=authentication["name"], **self._facts(authentication))
        return authentication

    # ---- login -----------------------------------------------------------------
    async def authenticate(self, handler, data=None, **kwargs):
        try:
            return await super().authenticate(handler, data, **kwargs)
        except IdTokenInvalid as e:
            self.audit.write("login.failed", reason="id-token-invalid", message=str(e))
            raise web.HTTPError(
                403, f"Login refused: the identity provider's id_token failed verification ({e}). "
                "Try again; if it persists, tell the hub admin.", reason="Login refused") from None
        except Exception as e:
            down = _outage(e)
            if down is None:
                raise
            self.audit.write("login.failed", reason="idp-unreachable", message=down)
            raise web.HTTPError(
                503, f"The identity provider ({_origin(self.token_url)}) did not answer while logging you in "
                f"({down}). Try again in a few minutes; if it persists, tell the hub admin.", reason=_DOWN) from None

    # ---- refresh ---------------------------------------------------------------
    async def refresh_user(self, user, handler=None, **kwargs):
        """Ask the IdP again; False (log in again) when it says no, the user is not allowed, or it is down.

        Concurrent refreshes of one user share one round trip, so a rotating
        refresh token is used once. Once the IdP has revoked a user, further
        refreshes answer False at once, without asking the IdP, until that user
        logs in again.
        """
        if user.name in self._revoked_users:
            _mark_cookie_request(handler)
            return False
        inflight = self._refreshing.get(user.name)
        if inflight is None:
            inflight = self._refreshing[user.name] = asyncio.ensure_future(self._refresh(user, handler))
            inflight.add_done_callback(lambda _: self._refreshing.pop(user.name, None))
        result = await asyncio.shield(inflight)
        if result is False:
            _mark_cookie_request(handler)
        return dict(result) if isinstance(result, dict) else result

    async def _refresh(self, user, handler):
        auth_state = await user.get_auth_state()
        if not auth_state:
            return self._revoked(user, handler, "no-auth-state", "no stored login; log in again", stop=False)
        token_info = auth_state.get("token_response") or {}
        refresh_token = auth_state.get("refresh_token")
        try:
            if refresh_token:
                token_info = await self.get_token_info(handler, self.build_refresh_token_request_params(refresh_token))
                token_info.setdefault("refresh_token", refresh_token)
            auth_model = await self._token_to_auth_model(token_info)
        except IdTokenInvalid as e:
            return self._revoked(user, handler, "id-token-invalid", str(e), stop=False)
        except Exception as e:
            down = _outage(e)
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
        if not super().check_blocked_users(user.name, auth_model):
            return self._revoked(user, handler, "blocked", "the user is in blocked_users", auth_model)
        if not await self._allowed(user.name, auth_model):
            return self._revoked(user, handler, "no-matching-rule",
                                 "the IdP no longer puts the user in an allowed group", auth_model)
        self.audit.write("auth.refresh", user=user.name, **self._facts(auth_model))
        return auth_model

    def _revoked(self, user, handler, reason, message, auth_model=None, stop=True):
        """Record a failed refresh and return False; stop servers when the IdP revoked access."""
        facts = self._facts(auth_model) if auth_model else {}
        event = "auth.revoked" if stop else "auth.refresh.failed"
        self.audit.write(event, user=user.name, reason=reason, message=message, **facts)
        self.log.warning("refresh for %s failed (%s): %s; the user must log in again", user.name, reason, message)
        if stop:
            self._revoked_users.add(user.name)
        if stop and self.stop_servers_on_revoke and handler is not None:
            for name, spawner in list(user.spawners.items()):
                if spawner.active and not spawner.pending:
                    self.audit.write("auth.server-stopped", user=user.name, server=name, reason=reason)
                    task = asyncio.ensure_future(handler.stop_single_user(user, name))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        return False


def _mark_cookie_request(handler):
    """Work around JupyterHub 6.1.1: after a failed refresh it reads ``_token_authenticated``,
    which it sets only on token-authenticated requests; a cookie request would log a traceback."""
    if handler is not None and not hasattr(handler, "_token_authenticated"):
        handler._token_authenticated = False


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


def _origin(url):
    parts = url.split("/", 3)
    return "/".join(parts[:3]) if len(parts) >= 3 else url
