"""HardenedOAuthenticator keeps GenericOAuthenticator's group settings; the rules read what they produce.

Logins go through JupyterHub's own ``get_authenticated_user`` with canned IdP
answers (test_auth_refresh.IdP). OAuthenticator's published tests, run with
both classes, are in tests/upstream/test_oauthenticator_suite.py; these cover
what those tests do not: the rules on top, and the ``idp_groups_claim`` migration.
"""

import logging

import pytest
from traitlets.config import Config

from hardened_spawner.authenticator import HardenedOAuthenticator
from auth_fakes import TOKEN_URL, USERINFO_URL, IdP

RULES = [{"value": "staff", "groups": ["cpu-users"]}, {"value": "ml-gpu", "groups": ["gpu-users"], "gpus": 1}]


class CodeHandler:
    """The callback request, as far as the token exchange reads it."""

    def get_argument(self, name, default=None):
        return "the-code"


def make(idp, **settings):
    auth = HardenedOAuthenticator(
        client_id="hub", client_secret="s", token_url=TOKEN_URL, userdata_url=USERINFO_URL,
        authorize_url="https://idp.example.org/authorize", oauth_callback_url="https://hub.example.org/hub/oauth_callback",
        enable_pkce=False, username_claim="preferred_username", **settings)
    auth.httpfetch = idp.httpfetch
    return auth


async def login(auth):
    return await auth.get_authenticated_user(CodeHandler(), None)


def claims(**more):
    return {"preferred_username": "alice", **more}


async def test_without_rules_hub_groups_are_the_idp_groups_and_no_entitlements_are_stored():
    """GenericOAuthenticator's meaning; no entitlements, so the spawner gates profiles by hub groups
    alone (stored empty entitlements would cap every user at 0 GPUs)."""
    idp = IdP(claims(org={"teams": ["staff", "ml-gpu"]}))
    auth = make(idp, manage_groups=True, auth_state_groups_key="oauth_user.org.teams", allowed_groups={"staff"},
                admin_groups={"ml-gpu"})
    model = await login(auth)
    assert model["groups"] == ["ml-gpu", "staff"] and model["admin"] is True
    assert "entitlements" not in model["auth_state"]
    idp.claims = claims(org={"teams": ["visitors"]})
    assert await login(auth) is None  # not in allowed_groups


def test_manage_groups_defaults_on_only_with_rules():
    assert HardenedOAuthenticator().manage_groups is False  # GenericOAuthenticator's default
    assert HardenedOAuthenticator(entitlement_rules=RULES).manage_groups is True
    c = Config()
    c.HardenedOAuthenticator.entitlement_rules = RULES
    c.GenericOAuthenticator.allowed_groups = {"cpu-users"}  # needs manage_groups: on, from the rules
    assert HardenedOAuthenticator(config=c).manage_groups is True


async def sync_teams_hook(authenticator, auth_state):
    auth_state["teams"] = ["ml-gpu"]
    return auth_state


@pytest.mark.parametrize("groups_key", ["teams", lambda auth_state: auth_state["teams"]], ids=["dotted", "callable"])
async def test_rules_read_the_groups_auth_state_groups_key_produces(groups_key):
    """A hook fills auth_state; auth_state_groups_key reads it; the rules map it to hub groups."""
    idp = IdP(claims(groups=["staff"]))  # a ``groups`` claim the settings do not point at
    auth = make(idp, entitlement_rules=RULES, modify_auth_state_hook=sync_teams_hook, auth_state_groups_key=groups_key)
    model = await login(auth)
    assert model["groups"] == ["gpu-users"]
    ent = model["auth_state"]["entitlements"]
    assert ent["gpus"] == 1 and ent["idp_groups"] == ["ml-gpu"] and ent["matched"] == [1]


async def test_rules_with_a_claim_still_read_that_claim():
    idp = IdP(claims(realm_access={"roles": ["jupyter"]}))
    auth = make(idp, entitlement_rules=[{"claim": "realm_access.roles", "value": "jupyter", "groups": ["cpu-users"]}])
    assert (await login(auth))["groups"] == ["cpu-users"]


def test_idp_groups_claim_alone_becomes_auth_state_groups_key(caplog):
    caplog.set_level(logging.WARNING)
    auth = HardenedOAuthenticator(entitlement_rules=RULES, idp_groups_claim="realm_access.roles")
    assert auth.auth_state_groups_key == "oauth_user.realm_access.roles"
    assert "idp_groups_claim is deprecated: use HardenedOAuthenticator.auth_state_groups_key = " \
           "'oauth_user.realm_access.roles'" in caplog.text


def test_idp_groups_claim_and_auth_state_groups_key_naming_the_same_groups_is_accepted():
    c = Config()
    c.HardenedOAuthenticator.entitlement_rules = RULES
    c.HardenedOAuthenticator.idp_groups_claim = "roles"
    c.HardenedOAuthenticator.auth_state_groups_key = "oauth_user.roles"
    assert HardenedOAuthenticator(config=c).auth_state_groups_key == "oauth_user.roles"


@pytest.mark.parametrize("setting, value, named", [
    ("auth_state_groups_key", "oauth_user.groups", "'oauth_user.groups'"),  # even the default, when set
    ("claim_groups_key", "teams", "'oauth_user.teams'"),                    # GenericOAuthenticator's older name
])
def test_idp_groups_claim_and_auth_state_groups_key_that_disagree_stop_the_hub(setting, value, named):
    c = Config()
    c.HardenedOAuthenticator.entitlement_rules = RULES
    c.HardenedOAuthenticator.idp_groups_claim = "roles"
    setattr(c.HardenedOAuthenticator, setting, value)
    with pytest.raises(ValueError) as e:
        HardenedOAuthenticator(config=c)
    assert str(e.value) == (
        f"HardenedOAuthenticator.idp_groups_claim = 'roles' and HardenedOAuthenticator.auth_state_groups_key = "
        f"{named} name different groups. idp_groups_claim is deprecated: remove it, and keep "
        "auth_state_groups_key (the claim 'roles' is auth_state_groups_key = 'oauth_user.roles').")


def test_idp_groups_claim_without_rules_or_manage_groups_says_what_it_needs():
    with pytest.raises(ValueError, match="set entitlement_rules, or manage_groups = True for hub groups"):
        HardenedOAuthenticator(idp_groups_claim="roles")


def test_rules_granting_hub_groups_need_manage_groups():
    with pytest.raises(ValueError, match="entitlement_rules grant hub groups, but HardenedOAuthenticator.manage_groups"
                                         " is False"):
        HardenedOAuthenticator(entitlement_rules=RULES, manage_groups=False)
    # rules that grant no hub groups (a GPU quota, admin) do not need it
    assert not HardenedOAuthenticator(entitlement_rules=[{"value": "a", "admin": True}], manage_groups=False).manage_groups


def test_auth_state_off_is_refused():
    with pytest.raises(ValueError, match="enable_auth_state = False: every refresh re-checks access with the IdP"):
        HardenedOAuthenticator(enable_auth_state=False)
