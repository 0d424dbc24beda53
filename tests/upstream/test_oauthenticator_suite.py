"""OAuthenticator's own published tests, run with GenericOAuthenticator and with HardenedOAuthenticator.

The modules ship inside the installed oauthenticator package (``oauthenticator/tests/``:
test_generic.py, test_oauth2.py, with their conftest.py and mocks.py) and run from
there, at the pinned version; nothing of them is copied into this repository.
upstream_oauth_plugin.py swaps the class and carries the one shim for JupyterHub 6.1
(the ``user_info`` key), documented there. The two runs go at the same time in two
pytest processes (no network: the tests mock the provider); the per-test outcomes, the
pass counts and the time are written to artifacts/upstream-oauthenticator.json.

A drop-in replacement passes whatever GenericOAuthenticator passes. Where it does not,
by design, the test and the reason are listed in ``KNOWN`` (each with the error text
that identifies it), so a new regression fails here and a fixed one shows up as a stale
entry.
"""

import importlib.metadata
import importlib.util
from pathlib import Path

import pytest
from jupyterhub.auth import Authenticator

from suites import regressions, run_both, stale

HERE = Path(__file__).resolve().parent
VERSION = "17.4.0"  # the pinned oauthenticator, whose tests these KNOWN entries describe
MODULES = ("oauthenticator.tests.test_generic", "oauthenticator.tests.test_oauth2")


def _class_named(trait):
    return (f"by design of subclassing: OAuthenticator names the configured class in the message, "
            f"HardenedOAuthenticator, where the test expects 'GenericOAuthenticator'; the check itself ({trait} "
            "without manage_groups stops the hub) is the same",
            f"Actual message: 'HardenedOAuthenticator.{trait} requires HardenedOAuthenticator.manage_groups to also be set'")


# test id (or prefix*) -> (why HardenedOAuthenticator fails it, text that identifies the failure)
KNOWN = {
    "test_generic.test_generic[id_token-*": (
        "by design (docs/authentication.md, id_token verification): userdata_from_id_token needs jwks_url and "
        "id_token_issuer, so every id_token's signature is verified; upstream decodes it unverified, and these "
        "tests sign theirs with HMAC key 'foo', which no provider's JWKS can verify",
        "userdata_from_id_token needs jwks_url and id_token_issuer"),
    **{f"test_generic.test_generic_manage_groups_required[{p}]": _class_named(trait) for p, trait in (
        ("auth_state_groups_key-oauth_user.permissions.groups", "auth_state_groups_key"),
        ("admin_groups-value1", "admin_groups"), ("allowed_groups-value2", "allowed_groups"))},
    # a prefix: pytest ids this parameter by its message or as expect_message0 depending on its version
    "test_generic.test_deprecated_config[claim_groups_key-class_config0-expect_config0-30-*": (
        "by design of subclassing: the deprecation warning names the configured class, HardenedOAuthenticator; "
        "claim_groups_key still becomes auth_state_groups_key",
        "'HardenedOAuthenticator.claim_groups_key is deprecated since OAuthenticator 17.0, use "
        "HardenedOAuthenticator.auth_state_groups_key instead'"),
    **{f"test_generic.test_refresh_user[{p}]": (
        "by design: enable_auth_state is on by default (every refresh re-checks access with the IdP using the "
        "stored tokens), so the test's first step, a refresh with auth_state off answering True, gets the "
        "refreshed model instead; tests/unit/test_auth_refresh.py covers the later steps "
        "(refresh_user_hook, groups re-read, a rejected refresh token)",
        "test_generic.py:578: in test_refresh_user") for p in ("True", "False")},
}


def installed_modules():
    """The published modules of the installed oauthenticator, at the pinned version."""
    assert importlib.metadata.version("oauthenticator") == VERSION, "KNOWN describes oauthenticator's tests at " + VERSION
    for module in MODULES:
        assert importlib.util.find_spec(module) is not None, f"{module} is not in the installed oauthenticator"
    return Path(importlib.util.find_spec("oauthenticator").origin).parent.parent


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    site = installed_modules()
    return run_both("oauthenticator", [
        "-p", "upstream_oauth_plugin", "-c", str(HERE / "pytest.ini"), "--rootdir", str(site),
        "-o", "asyncio_default_fixture_loop_scope=function", "--pyargs", *MODULES,
    ], "HS_UPSTREAM_AUTHENTICATOR", site, tmp_path_factory, timeout=300)


def test_both_runs_collected_the_whole_published_suite(results):
    assert results["plain"].keys() == results["hardened"].keys()
    assert len(results["plain"]) >= 70, sorted(results["plain"])
    # the comparison means something only if GenericOAuthenticator passes them here
    assert [t for t, (o, _) in results["plain"].items() if o != "passed"] == []


def test_hardened_passes_what_plain_passes_except_known(results):
    assert regressions(KNOWN, results) == {}


def test_known_failures_are_still_failures(results):
    """Remove an entry from KNOWN once the hardened class passes that test."""
    assert stale(KNOWN, results) == []


async def test_the_user_info_shim_is_still_needed():
    """The plugin drops JupyterHub 6.1's ``user_info: None``; once JupyterHub stops adding it, remove the shim."""
    class Named(Authenticator):
        async def authenticate(self, handler, data):
            return {"name": "someone"}

    model = await Named(allow_all=True).get_authenticated_user(None, {})
    assert model["user_info"] is None
