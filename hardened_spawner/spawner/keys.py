"""Reading a user's SSH keys for a spawn: the key store, off the event loop, with a timeout.

At every start, before anything is created, the user's keys are read from
the configured store and validated (:mod:`..keys.validation`). Any failure
of the store (down, slow, refused, broken) is one outcome, "unavailable",
with the reason; the pipeline then fails closed unless ``ssh_required`` is off.
"""

import asyncio

from ..errors import SpawnRefused
from ..keys.stores import KeyStoreError
from ..keys.validation import check_keys, render_authorized_keys
from ..telemetry import metrics


class KeysUnavailable(Exception):
    """The store could not answer; ``reason`` says why, in words for the user."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class KeySource:
    """The keys of one user, fetched from ``store`` and checked against ``policy``."""

    def __init__(self, store, policy, timeout, executor, authorization=None):
        self.store = store
        self.authorization = authorization  # with ssh_user_certificates: the CA lines delivered instead
        self.policy = policy
        self.timeout = timeout
        self.executor = executor

    @property
    def configured(self):
        return self.store.configured()

    def describe(self):
        return self.store.describe()

    async def fetch(self, username):
        """The :class:`~..keys.validation.KeyCheck` of ``username``'s keys; :class:`KeysUnavailable` if the
        store fails."""
        try:
            text = await self._read(username)
        except KeysUnavailable:
            metrics.key_lookup("spawn", ok=False)
            raise
        metrics.key_lookup("spawn", ok=True)
        return check_keys(text or "", self.policy)

    async def _read(self, username):
        try:
            future = asyncio.get_running_loop().run_in_executor(self.executor, self.store.fetch, username)
            return await asyncio.wait_for(future, self.timeout)
        except asyncio.TimeoutError:
            raise KeysUnavailable(f"no answer within {self.timeout:g} s") from None
        except KeyStoreError as e:
            raise KeysUnavailable(e.reason) from None
        except Exception as e:  # any other failure of the store is "unavailable" too: fail closed
            raise KeysUnavailable(f"{type(e).__name__}: {e}") from None

    def render(self, check):
        """The authorized_keys text delivered into the container ("" when no key was accepted); with user
        certificates, the CA trusted for this server and no user key."""
        if self.authorization is not None:
            return self.authorization
        return render_authorized_keys(check, self.policy.forced_options)


async def keys_for_spawn(source, user, server, required, audit, say):
    """The authorized_keys text of ``user``'s spawn (None: nothing to deliver), audited and told in progress.

    A store that fails refuses the spawn (SpawnRefused ``ssh-key-store``) when
    ``required``; otherwise the server starts without SSH.
    """
    if not source.configured:
        return None
    fields = {"user": user, "server": server, "store": source.describe()}
    say(f"Fetching your SSH keys from the {source.describe()}")
    try:
        check = await source.fetch(user)
    except KeysUnavailable as e:
        audit.write("ssh.keys", **fields, decision="unavailable", reason=e.reason)
        if required:
            raise SpawnRefused(
                f"Your SSH keys could not be read from the {source.describe()}: {e.reason}. "
                "This hub requires SSH keys at every start, so your server was not started; "
                "try again later or tell the hub admin.", reason="ssh-key-store") from None
        say(f"SSH keys unavailable ({e.reason}): starting without SSH")
        return None
    if check.accepted or check.rejected:  # a user without keys adds no line
        audit.write("ssh.keys", **fields, decision="delivered", **check.as_audit())
    for rejected in check.rejected:
        say(f"SSH key rejected, {rejected.describe()}")
    if check.accepted:
        say(f"{len(check.accepted)} SSH key(s) accepted: " + ", ".join(check.fingerprints))
    if source.authorization is not None:
        say("SSH logins to this server need a user certificate: get one for your key on the SSH keys page")
    return source.render(check)
