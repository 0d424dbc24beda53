"""Class swap and one JupyterHub 6.1 shim for OAuthenticator's published tests.

Loaded with ``pytest -p upstream_oauth_plugin`` by test_oauthenticator_suite.py,
which runs ``oauthenticator/tests/test_generic.py`` and ``test_oauth2.py`` from
the installed oauthenticator package (with its own ``conftest.py`` and
``mocks.py``) twice: ``HS_UPSTREAM_AUTHENTICATOR=plain`` (GenericOAuthenticator)
and ``=hardened`` (HardenedOAuthenticator).

The swap happens here, before the test modules are imported:

- ``test_generic.py`` imports ``GenericOAuthenticator`` from
  ``oauthenticator.generic``: it is replaced there by the class under test.
  The tests' ``c.GenericOAuthenticator`` config still applies to
  HardenedOAuthenticator, its subclass, as it would in a hub.
- ``test_oauth2.py`` tests the base class with its login, callback and logout
  handlers: ``OAuthenticator`` and the three handlers are replaced in
  ``oauthenticator.oauth2`` by the class under test and the handlers it uses
  (its ``login_handler``, ``callback_handler``, ``logout_handler``), so the plain
  run is GenericOAuthenticator with OAuthenticator's handlers.

The shim (the same for both classes): JupyterHub 6.1's
``Authenticator.get_authenticated_user`` adds ``user_info`` to every auth
model (``None`` unless the authenticator returned one), and the published
tests, written against JupyterHub 5, compare the model's keys exactly. The
shim removes that key when its value is ``None``, which is what JupyterHub 5
returned; a ``user_info`` an authenticator sets is kept. It is chosen over a
second environment with JupyterHub 5 because the hardened class runs only on
the pinned JupyterHub 6.1, which is what these runs must exercise.
``test_oauthenticator_suite.test_the_user_info_shim_is_still_needed`` fails
once JupyterHub stops adding the key, so the shim cannot outlive its reason.
"""

import os

import oauthenticator.generic
import oauthenticator.oauth2
import pytest
from jupyterhub.auth import Authenticator

KIND = os.environ.get("HS_UPSTREAM_AUTHENTICATOR", "plain")
if KIND == "hardened":
    from hardened_spawner.authenticator import HardenedOAuthenticator as UNDER_TEST
elif KIND == "plain":
    UNDER_TEST = oauthenticator.generic.GenericOAuthenticator
else:
    raise pytest.UsageError(f"HS_UPSTREAM_AUTHENTICATOR must be plain or hardened, not {KIND!r}")

oauthenticator.generic.GenericOAuthenticator = UNDER_TEST
oauthenticator.oauth2.OAuthenticator = UNDER_TEST
oauthenticator.oauth2.OAuthLoginHandler = UNDER_TEST.login_handler
oauthenticator.oauth2.OAuthCallbackHandler = UNDER_TEST.callback_handler
oauthenticator.oauth2.OAuthLogoutHandler = UNDER_TEST.logout_handler

_get_authenticated_user = Authenticator.get_authenticated_user


async def _without_jupyterhub6_user_info(self, handler, data):
    model = await _get_authenticated_user(self, handler, data)
    if isinstance(model, dict) and "user_info" in model and model["user_info"] is None:
        del model["user_info"]
    return model


Authenticator.get_authenticated_user = _without_jupyterhub6_user_info
