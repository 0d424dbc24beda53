"""Entitlement rules: parsing with clear problems, and evaluation of claims."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardened_spawner.decisions import entitlements as ent
from hardened_spawner.authenticator import HardenedOAuthenticator

RULES = [
    {"value": "staff", "groups": ["cpu-users"]},
    {"value": "ml-gpu", "groups": ["gpu-users"], "profiles": ["gpu-1"], "gpus": 1, "images": ["pytorch"]},
    {"value": "ml-big", "groups": ["gpu-users"], "gpus": 4},
    {"value": "hub-admins", "admin": True},
    {"claim": "realm_access.roles", "value": "jupyter", "groups": ["cpu-users"]},
    {"claim": "email_verified", "value": True, "images": ["base"]},
]


def parsed(rules=RULES):
    rules, problems = ent.parse_rules("R", rules)
    assert problems == []
    return rules


def test_groups_union_and_largest_gpu_quota():
    e = ent.evaluate(parsed(), {}, ["staff", "ml-gpu", "ml-big"])
    assert e.allowed and e.groups == ("cpu-users", "gpu-users")
    assert e.gpus == 4 and e.profiles == ("gpu-1",) and e.images == ("pytorch",)
    assert not e.admin and e.matched == (0, 1, 2) and e.idp_groups == ("ml-big", "ml-gpu", "staff")


def test_no_matching_rule_means_no_access():
    e = ent.evaluate(parsed(), {"email_verified": False}, ["visitors"])
    assert e == ent.Entitlements(idp_groups=("visitors",)) and not e.allowed and e.describe() == "no access"


def test_rules_without_claim_read_the_idp_groups_not_a_claim():
    """The groups come from auth_state_groups_key (GenericOAuthenticator's setting), not a ``groups`` claim."""
    rules = parsed()
    assert not ent.evaluate(rules, {"groups": ["staff"]}, []).allowed
    assert ent.evaluate(rules, {}, {"staff"}).groups == ("cpu-users",)
    assert ent.reads_groups(rules) and not ent.reads_groups(parsed(RULES[4:]))


def test_admin_rule_and_nested_claim():
    e = ent.evaluate(parsed(), {"realm_access": {"roles": ["jupyter"]}}, ["hub-admins"])
    assert e.allowed and e.admin and e.groups == ("cpu-users",)
    assert ent.manages_admin(parsed()) and not ent.manages_admin(parsed(RULES[:3]))


def test_boolean_claim_does_not_match_integer_one():
    rules = parsed([{"claim": "level", "value": 1, "groups": ["g"]}])
    assert not ent.evaluate(rules, {"level": True}).allowed
    assert ent.evaluate(rules, {"level": 1}).allowed
    assert ent.evaluate(parsed(), {"email_verified": True}).images == ("base",)


def test_round_trip_through_auth_state():
    e = ent.evaluate(parsed(), {}, ["staff", "ml-gpu", "hub-admins"])
    auth_state = {ent.AUTH_STATE_KEY: e.as_dict(), "access_token": "secret"}
    assert ent.from_auth_state(auth_state) == e
    assert ent.from_auth_state({"access_token": "x"}) is None
    assert e.describe() == "groups cpu-users, gpu-users; profiles gpu-1; images pytorch; 1 GPU; admin"


@pytest.mark.parametrize("rules, where, words", [
    ([{"value": "x", "group": ["g"]}], "R[0]", "unknown key(s) group"),
    ([{"groups": ["g"]}], "R[0].value", "is required"),
    ([{"value": "x", "gpus": -1}], "R[0].gpus", "0 to 64"),
    ([{"value": "x", "gpus": True}], "R[0].gpus", "whole number"),
    ([{"value": "x", "admin": "yes"}], "R[0].admin", "True or False"),
    ([{"value": "x", "groups": ["ok", ""]}], "R[0].groups", "non-empty names"),
    ([{"value": "x", "claim": "a..b"}], "R[0].claim", "dotted path"),
    (["staff"], "R[0]", "must be a dict"),
    ({"value": "x"}, "R", "must be a list"),
])
def test_bad_rules_name_the_rule_and_key(rules, where, words):
    parsed_rules, problems = ent.parse_rules("R", rules)
    assert parsed_rules == []
    assert any(setting == where and words in message for setting, message in problems), problems


def test_authenticator_refuses_bad_rules_and_unsafe_id_token_settings():
    with pytest.raises(Exception, match=r"entitlement_rules\[0\]: unknown key\(s\) group"):
        HardenedOAuthenticator(entitlement_rules=[{"value": "x", "group": ["g"]}])
    with pytest.raises(Exception, match="may not include none, HS256"):
        HardenedOAuthenticator(id_token_algorithms=["RS256", "none", "HS256"])
    with pytest.raises(ValueError, match="needs jwks_url and id_token_issuer"):
        HardenedOAuthenticator(userdata_from_id_token=True)
    a = HardenedOAuthenticator(entitlement_rules=RULES)
    assert a.manage_groups and a.enable_auth_state and a.auth_refresh_strict and a.enable_pkce
    assert a.refresh_pre_spawn


names = st.sampled_from(["staff", "ml-gpu", "ml-big", "hub-admins", "visitors", "x"])


@given(st.lists(names, max_size=6), st.lists(names, max_size=6))
def test_more_groups_never_grant_less(a, b):
    """Monotonic: adding IdP groups can only add entitlements (union semantics)."""
    rules = parsed()
    small = ent.evaluate(rules, {}, a)
    big = ent.evaluate(rules, {}, a + b)
    assert set(small.groups) <= set(big.groups)
    assert set(small.profiles) <= set(big.profiles) and set(small.images) <= set(big.images)
    assert small.gpus <= big.gpus and (not small.admin or big.admin)
    assert (not small.allowed) or big.allowed
    assert big.allowed == bool(set(a + b) & {"staff", "ml-gpu", "ml-big", "hub-admins"})
