"""HardenedOAuthenticator: a drop-in GenericOAuthenticator whose refresh revokes.

Every GenericOAuthenticator (OAuthenticator 17.4) setting keeps its meaning:
``auth_state_groups_key`` (a dotted path or a callable, after
``modify_auth_state_hook``), ``allowed_groups``, ``admin_groups``,
``manage_groups``, ``refresh_user_hook``, ``username_claim``. On top:

- every refresh asks the IdP again and re-runs the allow and block checks
  (:mod:`.refresh`); upstream's ``refresh_user`` never re-ran ``check_allowed``,
  so a user removed from every allowed group kept working;
- ``userdata_from_id_token`` verifies the id_token's signature against the
  provider's JWKS, with audience, issuer and expiry (upstream decodes it
  unverified);
- ``enable_auth_state``, ``auth_refresh_strict`` and ``enable_pkce`` are on,
  and ``manage_groups`` is on when ``entitlement_rules`` are set;
- every ``entitlement_check_interval`` seconds, users with a running server
  or an SSH session are re-checked in the background, and a withdrawal is
  kept in the hub database (:mod:`.withdrawals`);
- ``entitlement_rules`` turn the IdP groups those settings produce (and any
  other claim) into hub groups, profiles, a GPU quota, images and admin,
  computed by :mod:`..decisions.entitlements` at login and every refresh
  and kept in auth_state.

Audit lines never carry tokens. docs/authentication.md says what differs from
GenericOAuthenticator and why ("Switching from GenericOAuthenticator").
"""

from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import Bool, Float, List, TraitError, Unicode, default, observe, validate

from .. import telemetry
from ..audit import AuditLog
from ..decisions import access, entitlements
from ..errors import new_reference
from ..id_tokens import IdTokenInvalid, IdTokenVerifier
from ..pages import RefusalPages
from ..pages.login import IDP_DOWN, HardenedLoginHandler, HardenedOAuthCallbackHandler, HardenedOAuthLoginHandler, note_denial
from .refresh import RevokingRefresh, outage
from .withdrawals import Withdrawals


class HardenedOAuthenticator(RevokingRefresh, Withdrawals, RefusalPages, GenericOAuthenticator):
    """GenericOAuthenticator with IdP-driven entitlements, revoking refresh and verified id_tokens."""

    login_handler = HardenedOAuthLoginHandler
    callback_handler = HardenedOAuthCallbackHandler

    entitlement_rules = List(
        config=True,
        help="""Rules that turn identity-provider claims into entitlements.

        Each rule is a dict: ``value`` and optionally ``claim`` select users.
        Without ``claim``, the user's IdP groups (what ``auth_state_groups_key``
        reads, as for GenericOAuthenticator) must contain ``value``; with it, that
        claim of the user info (a name or dotted path) must equal or contain it.
        ``groups`` (hub groups, which gate profiles), ``profiles`` (profile
        slugs), ``gpus`` (most GPUs per server), ``images`` (image names) and
        ``admin`` (True/False) are granted. A user gets the union of every rule
        they match and the largest GPU quota; a user who matches no rule (and
        is not let in by GenericOAuthenticator's own checks: ``allowed_users``,
        ``admin_users``, ``allowed_groups``, ...) cannot log in, and loses access
        at the next refresh. With rules, the hub groups are the groups the rules
        grant (``allowed_groups`` and ``admin_groups`` name those), and
        ``manage_groups`` is on by default; without rules, the hub groups are
        the IdP groups, as with GenericOAuthenticator. Example::

            [{"value": "ml-gpu", "groups": ["gpu-users"], "gpus": 1},
             {"value": "staff", "groups": ["cpu-users"]},
             {"value": "hub-admins", "admin": True},
             {"claim": "realm_access.roles", "value": "jupyter", "groups": ["cpu-users"]}]
        """,
    ).tag(allow_config=True)
    idp_groups_claim = Unicode(
        "", config=True,
        help="""Deprecated: use ``auth_state_groups_key = "oauth_user.<claim>"``, GenericOAuthenticator's setting.

        A claim name or dotted path in the user info; when set, it becomes
        ``auth_state_groups_key`` (with a warning). Setting both to different
        groups is an error that stops the hub.""",
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
        # the hub groups the rules grant reach the hub only with manage_groups; without
        # rules, GenericOAuthenticator's default (admin-managed groups) stands
        return bool(self.entitlement_rules)

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
        rules, problems = entitlements.parse_rules(f"{type(self).__name__}.entitlement_rules", proposal.value)
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

    _groups_key_set = False  # auth_state_groups_key (or claim_groups_key) was configured

    @observe("auth_state_groups_key")
    def _note_groups_key_set(self, change):
        self._groups_key_set = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        if self.userdata_from_id_token and not (self.jwks_url and self.id_token_issuer):
            raise ValueError(
                f"{cls}.userdata_from_id_token needs jwks_url and id_token_issuer "
                "(the provider's jwks_uri and issuer) so id_token signatures can be verified")
        if not self.enable_auth_state:
            raise ValueError(
                f"{cls}.enable_auth_state = False: every refresh re-checks access with the IdP using the "
                "tokens kept in auth_state. Leave it on (the default) and set JUPYTERHUB_CRYPT_KEY.")
        self._adopt_idp_groups_claim()
        if entitlements.grants_groups(self.rules) and not self.manage_groups:
            raise ValueError(
                f"{cls}.entitlement_rules grant hub groups, but {cls}.manage_groups is False, so JupyterHub "
                "would never apply them: remove manage_groups = False (it is on by default with rules).")
        self._id_tokens = None
        self._refreshing = {}

    def _adopt_idp_groups_claim(self):
        """The deprecated ``idp_groups_claim`` becomes ``auth_state_groups_key``, or stops the hub if they disagree."""
        claim, cls = self.idp_groups_claim, type(self).__name__
        if not claim:
            return
        key, current = f"{self.user_auth_state_key}.{claim}", self.auth_state_groups_key
        if self._groups_key_set and current != key:
            raise ValueError(
                f"{cls}.idp_groups_claim = {claim!r} and {cls}.auth_state_groups_key = {current!r} name different "
                f"groups. idp_groups_claim is deprecated: remove it, and keep auth_state_groups_key (the "
                f"claim {claim!r} is auth_state_groups_key = {key!r}).")
        if current != key and not self.manage_groups:
            raise ValueError(
                f"{cls}.idp_groups_claim = {claim!r} (deprecated: auth_state_groups_key = {key!r}) names the "
                "groups entitlement rules read: set entitlement_rules, or manage_groups = True for hub groups.")
        self.log.warning("%s.idp_groups_claim is deprecated: use %s.auth_state_groups_key = %r instead",
                         cls, cls, key)
        if current != key:
            self.auth_state_groups_key = key

    @property
    def rules(self):
        return entitlements.parse_rules("", self.entitlement_rules)[0]

    @property
    def audit(self):
        telemetry.install()  # the hub's records become metrics and events
        return AuditLog(self.audit_log_file, self.log if self.audit_to_hub_log else None)

    def get_handlers(self, app):
        return [(r"/login", HardenedLoginHandler)] + super().get_handlers(app)

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

    async def idp_groups(self, auth_state):
        """The user's IdP groups, read as GenericOAuthenticator reads them (``auth_state_groups_key``)."""
        return await super().get_user_groups(auth_state)

    async def update_auth_model(self, auth_model):
        """With rules: evaluate them on the IdP groups and claims, keep the entitlements in auth_state,
        and set admin when the rules manage it. Without rules: nothing (GenericOAuthenticator)."""
        rules = self.rules
        if not rules:
            return auth_model
        auth_state = auth_model["auth_state"]
        groups = await self.idp_groups(auth_state) if entitlements.reads_groups(rules) else ()
        ent = entitlements.evaluate(rules, self._claims(auth_state), groups)
        auth_state[entitlements.AUTH_STATE_KEY] = ent.as_dict()
        if auth_model["admin"] is None and entitlements.manages_admin(rules):
            auth_model["admin"] = ent.admin
        return auth_model

    async def get_user_groups(self, auth_state):
        """The hub groups: those the rules grant; without rules, the IdP groups (GenericOAuthenticator)."""
        if not self.rules:
            return await self.idp_groups(auth_state)
        return set((entitlements.from_auth_state(auth_state) or entitlements.Entitlements()).groups)

    def _facts(self, auth_model):
        """Audit fields for one auth model: IdP groups and entitlements, never tokens."""
        ent = entitlements.from_auth_state(auth_model.get("auth_state"))
        if ent is None:  # no rules: the hub groups are the IdP groups
            return {"idp_groups": sorted(auth_model.get("groups") or ()), "admin": auth_model.get("admin")}
        return {"idp_groups": list(ent.idp_groups), "entitlements": ent.as_dict(), "admin": auth_model.get("admin")}

    async def still_allowed(self, name):
        """Only the identity provider can say (at the next re-check): ``check_allowed`` needs its answer."""
        return True

    async def _allowed(self, username, auth_model):
        if self.allow_all or await super().check_allowed(username, auth_model):
            return True
        ent = entitlements.from_auth_state(auth_model.get("auth_state"))
        return bool(ent and ent.allowed)

    async def check_allowed(self, username, auth_model):
        allowed = await self._allowed(username, auth_model)
        if not allowed:
            self._denied(username, "no-matching-rule", **self._facts(auth_model))
        return allowed

    def check_blocked_users(self, username, authentication=None):
        passed = super().check_blocked_users(username, authentication)
        if not passed:
            self._denied(username, "blocked")
        return passed

    def _denied(self, username, reason, **facts):
        """Audit a refused login and give its words to the login page."""
        denial = access.LoginDenial(username, reason, new_reference(), self._revoked_users.get(username))
        self.audit.write("login.denied", user=username, reason=reason, ref=denial.ref, notice=denial.notice(),
                         **facts)
        note_denial(denial)

    async def run_post_auth_hook(self, handler, authentication):
        authentication = await super().run_post_auth_hook(handler, authentication)
        self.remember_login(authentication["name"])  # the login's new auth_state drops a kept withdrawal
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
            down = outage(e)
            if down is None:
                raise
            self.audit.write("login.failed", reason="idp-unreachable", message=down)
            raise web.HTTPError(
                503, f"The identity provider ({_origin(self.token_url)}) did not answer while logging you in "
                f"({down}). Try again in a few minutes; if it persists, tell the hub admin.", reason=IDP_DOWN) from None


def with_withdrawals(authenticator_class):
    """``authenticator_class`` (one without an identity provider to re-check with, e.g. PAM) with
    :class:`~..pages.RefusalPages` and :class:`~.withdrawals.Withdrawals`: ``blocked_users`` and removal
    from ``allowed_users`` stop servers, close SSH sessions and refuse spawns, as a withdrawal by the
    IdP does. For ``c.JupyterHub.authenticator_class``."""
    return type(f"{authenticator_class.__name__}WithWithdrawals", (Withdrawals, RefusalPages, authenticator_class), {})


def _origin(url):
    parts = url.split("/", 3)
    return "/".join(parts[:3]) if len(parts) >= 3 else url
