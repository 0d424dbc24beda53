"""SSH public keys from the identity provider, as LDAP ``sshPublicKey`` deployments publish them.

The OAuth authenticator keeps the IdP's userinfo (or verified id_token
claims) in the user's auth_state, and replaces it at every login and every
auth refresh. :class:`IdPKeyStore` reads a claim of it: a string (one key per
line) or a list of strings. Those keys are read-only here (change them at
the IdP); ``combine_with`` adds a second store for keys users manage on the
SSH keys page. Every key is validated by the same policy as any other.

The store does not fetch auth_state itself: whoever holds it (the spawner
before a start, the SSH keys service from the Hub API) hands it over with
:meth:`use_auth_state` before calling :meth:`fetch`.
"""

import threading

from traitlets import Unicode

from .stores import KeySource, KeyStore, check_username, store_class

IDP_SOURCE = "identity provider"


def claim_value(claims, path):
    """The value at dotted ``path`` in ``claims`` (None when absent)."""
    value = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def keys_from_claim(value):
    """``authorized_keys`` text from a claim value: a string of lines or a list of strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "\n".join(v for v in value if isinstance(v, str))
    return ""


class IdPKeyStore(KeyStore):
    """Keys from an identity-provider claim kept in auth_state, optionally with another store."""

    claim = Unicode(
        "ssh_public_keys", config=True,
        help="""Claim (dotted path) of the IdP's userinfo that holds the user's SSH public keys:
        a string with one key per line, or a list of strings (LDAP ``sshPublicKey`` is often
        mapped this way). Refreshed at every login and auth refresh.""",
    )
    auth_state_key = Unicode(
        "oauth_user", config=True,
        help="""Key of auth_state under which the authenticator keeps the userinfo
        (OAuthenticator's ``user_auth_state_key``).""",
    )
    combine_with = Unicode(
        "", config=True,
        help="""Another key store whose keys users manage themselves on the SSH keys page
        (a name of the ``hardened_spawner.key_stores`` entry point group such as ``file`` or
        ``vault``, or an import path); empty: only the IdP's keys, and the page is
        read-only.""",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._keys = {}  # username -> text from the claim, as of the last auth_state handed over
        self._other = None
        self._loops = False  # combine_with names this store itself
        if self.combine_with:
            other = store_class(self.combine_with)
            self._loops = issubclass(other, IdPKeyStore)
            self._other = None if self._loops else other(parent=self)

    @property
    def other(self):
        """The store users manage themselves, or None."""
        return self._other

    def describe(self):
        where = f"claim {self.claim!r} from the identity provider"
        return f"{where} and the {self._other.describe()}" if self._other else where

    def configured(self):
        return True

    def config_problems(self):
        problems = [] if self.claim else ["claim must name the userinfo claim that holds the keys"]
        if self._loops:
            problems.append("combine_with cannot be the IdP store itself")
        if self._other is not None:
            problems += [f"{type(self._other).__name__}: {m}" for m in self._other.config_problems()]
        return problems

    def use_auth_state(self, username, auth_state):
        claims = (auth_state or {}).get(self.auth_state_key) or {}
        text = keys_from_claim(claim_value(claims, self.claim)) if isinstance(claims, dict) else ""
        with self._lock:
            self._keys[check_username(username)] = text

    def idp_text(self, username):
        with self._lock:
            return self._keys.get(username, "")

    def sources(self, username):
        check_username(username)
        found = [KeySource(IDP_SOURCE, self.idp_text(username), False)]
        if self._other is not None:
            found = self._other.sources(username) + found
        return found

    def fetch(self, username):
        texts = [s.text for s in self.sources(username) if s.text]
        return "\n".join(texts) if texts else None

    def read_only_reason(self):
        if self._other is None:
            return "your keys come from your identity provider: change them there"
        return self._other.read_only_reason()

    def update(self, username, change):
        if self._other is None:
            raise self.error(self.read_only_reason())
        return self._other.update(username, change)
