"""Who may see and change whose SSH keys: JupyterHub scopes. Pure.

* ``custom:ssh-keys:manage`` (list, add, remove) includes ``custom:ssh-keys:read``
  (list). Every user holds ``custom:ssh-keys:manage!user`` (their own keys);
  the SSH gateway holds ``custom:ssh-keys:read`` (everyone's, to authenticate).
* Whoever may administer a user (``admin:users`` for them: the hub's admins)
  may also manage that user's keys.

Group filters (``!group=``) are not resolved here (JupyterHub's
``check_scopes`` cannot see group membership): grant the scopes unfiltered
or per user.
"""

from jupyterhub.services.auth import check_scopes

READ = "custom:ssh-keys:read"
MANAGE = "custom:ssh-keys:manage"
CUSTOM_SCOPES = {
    MANAGE: {"description": "Add and remove SSH public keys (and list them).", "subscopes": [READ]},
    READ: {"description": "List SSH public keys and their fingerprints."},
}


def may_read(scopes, username):
    return bool(check_scopes({f"{READ}!user={username}", f"admin:users!user={username}"}, set(scopes)))


def may_manage(scopes, username):
    return bool(check_scopes({f"{MANAGE}!user={username}", f"admin:users!user={username}"}, set(scopes)))


def manages_everyone(scopes):
    """True when the scopes cover every user's keys (an admin, or an unfiltered grant)."""
    return bool({MANAGE, "admin:users"} & set(scopes))
