"""Whether a user may still reach their servers, for services that act for users (the SSH gateway).

``GET /hub/api/hardened-spawner/access/<name>`` answers ``{"user", "allowed",
"reason", "since"}``. A user is not allowed when the hub admin blocked them
(``blocked_users``), when the authenticator no longer allows them
(``allowed_users``, for authenticators without an identity provider), or when
a re-check found their access withdrawn by the identity provider
(HardenedOAuthenticator; kept in the hub database, see
:mod:`...authenticator.withdrawals`). The SSH gateway asks at every login, before every
forward, and for every open connection every few seconds; each question also
tells the authenticator that the user is using the hub, so the background
re-checks include them. Needs the scope :data:`SCOPE` (granted to the
gateway's role).
"""

import json

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

SCOPE = "custom:hardened-spawner:read-access"
SCOPE_DEFINITION = {SCOPE: {"description": "Read whether users' access was withdrawn or blocked (the SSH gateway)."}}


def verdict(name, blocked, withdrawal):
    """The answer for user ``name``: pure, from the blocked list and the authenticator's withdrawal (or None)."""
    if blocked:
        return {"user": name, "allowed": False, "reason": "blocked by the hub admin", "since": None}
    if withdrawal is not None:
        since = None if withdrawal.by == "the hub admin" else withdrawal.when()  # the configuration has no date
        return {"user": name, "allowed": False, "since": since,
                "reason": f"access withdrawn by {withdrawal.by}: {withdrawal.why()}"}
    return {"user": name, "allowed": True, "reason": "", "since": None}


class AccessAPIHandler(APIHandler):
    async def get(self, name):
        if SCOPE not in self.expanded_scopes:  # a custom scope: needs_scope cannot name it at import
            raise web.HTTPError(403, f"reading access needs the scope {SCOPE}")
        user = self.find_user(name)
        if user is None:
            raise web.HTTPError(404, f"no user {name!r}")
        authenticator = self.authenticator
        blocked = name in (getattr(authenticator, "blocked_users", None) or ())
        withdrawal = None
        if hasattr(authenticator, "access_withdrawal"):  # hardened_spawner.authenticator.withdrawals.Withdrawals
            authenticator.note_ssh_activity(name)
            withdrawal = await authenticator.access_withdrawal(user)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(verdict(name, blocked, withdrawal)))
