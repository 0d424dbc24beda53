"""Where users' SSH public keys come from.

A key store answers one question, synchronously: the ``authorized_keys``
text of a user, or ``None`` when the store holds no keys for them. Callers
run it off the event loop with a timeout. A store that cannot answer (down,
refused, misconfigured) raises :class:`KeyStoreError` naming itself and the
reason; the spawner then fails closed.
"""

import errno
import os
import stat
import threading

from traitlets import Bool, Float, Int, Unicode, Union, default
from traitlets.config import LoggingConfigurable


class KeyStoreError(Exception):
    """The store could not be read. ``store`` names it, ``reason`` says why."""

    def __init__(self, store, reason):
        super().__init__(f"{store}: {reason}")
        self.store = store
        self.reason = reason


def check_username(name):
    """Refuse names that could escape a path layout (``/``, ``..``, NUL, empty)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"{name!r} cannot name a key location")
    return name


class KeyStore(LoggingConfigurable):
    """Interface of a key store. Subclasses implement :meth:`describe` and :meth:`fetch`."""

    def configured(self):
        """False when the admin has not set the store up: the hub then runs without SSH."""
        return True

    def describe(self):
        """A short phrase naming this store for users and admins, e.g. ``file key store /srv/keys``."""
        raise NotImplementedError

    def fetch(self, username):
        """``authorized_keys`` text of ``username``, or ``None`` when the store has none."""
        raise NotImplementedError

    def config_problems(self):
        """Settings that cannot work, as messages (checked when the hub starts)."""
        return []

    def error(self, reason):
        return KeyStoreError(self.describe(), reason)


class FileKeyStore(KeyStore):
    """Keys in files: ``<root>/<username>/authorized_keys`` (OpenSSH format)."""

    root = Unicode(
        "", config=True,
        help="""Directory holding one sub-directory per user with an ``authorized_keys`` file.

        Empty (the default): no key store, SSH is off. The hub only reads it. A
        root that does not exist makes every spawn fail closed (or start without
        SSH when ``ssh_required`` is off); a missing user directory or file means
        the user has no keys.""",
    )
    max_bytes = Int(
        65536, config=True,
        help="Largest ``authorized_keys`` file read, in bytes; a larger file is an error.",
    )

    def describe(self):
        return f"file key store {self.root}"

    def configured(self):
        return bool(self.root)

    def config_problems(self):
        if self.root and not os.path.isabs(self.root):
            return [f"root must be an absolute path, not {self.root!r}"]
        return []

    def fetch(self, username):
        check_username(username)
        if not os.path.isdir(self.root):
            raise self.error("its root directory does not exist")
        return self.read_keys_file(os.path.join(self.root, username, "authorized_keys"), f"{username}/authorized_keys")

    def read_keys_file(self, path, name):
        """Text of the keys file ``path`` (``name`` in messages); None if it does not exist."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise self.error(f"{name} is a symbolic link; store a regular file") from None
            raise self.error(f"cannot read {name}: {e.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise self.error(f"{name} is not a regular file")
            for what, mode in (("file", info.st_mode), ("directory", os.stat(os.path.dirname(path)).st_mode)):
                if mode & (stat.S_IWGRP | stat.S_IWOTH):
                    raise self.error(f"the {what} of {name} is writable by group or "
                                     "others, so anyone could add keys; make it 0644 or stricter")
            if info.st_size > self.max_bytes:
                raise self.error(f"{name} is larger than {self.max_bytes} bytes")
            data = os.read(fd, self.max_bytes + 1)
        finally:
            os.close(fd)
        return data.decode("utf-8", errors="replace")


class SwarmSecretKeyStore(FileKeyStore):
    """Keys kept as Docker Swarm secrets, one per user, read where Swarm mounts them.

    Run the hub as a swarm service with each user's secret attached (Swarm
    never returns a secret's content through its API; a service that has the
    secret reads it as a file): ``<root>/<name_template>``, by default
    ``/run/secrets/ssh-keys-<username>``. Rotating keys means a new secret and
    a service update, as Swarm secrets are immutable.
    """

    root = Unicode("/run/secrets", config=True, help="Where Swarm mounts the hub service's secrets.")
    name_template = Unicode(
        "ssh-keys-{username}", config=True,
        help="File name (the secret's target) of a user's keys under ``root``; ``{username}`` is replaced.",
    )

    def describe(self):
        return f"swarm secret key store {os.path.join(self.root, self.name_template)}"

    def config_problems(self):
        problems = super().config_problems()
        if "{username}" not in self.name_template or "/" in self.name_template:
            problems.append(f"name_template must contain {{username}} and no '/', not {self.name_template!r}")
        return problems

    def fetch(self, username):
        check_username(username)
        if not os.path.isdir(self.root):
            raise self.error("the secrets directory does not exist (is the hub running as a swarm service?)")
        name = self.name_template.format(username=username)
        return self.read_keys_file(os.path.join(self.root, name), name)


class VaultKeyStore(KeyStore):
    """Keys in HashiCorp Vault's KV version 2 secrets engine, read with ``hvac``.

    The secret at ``<mount>/data/<path_template>`` holds the keys in one field
    (``field``) as ``authorized_keys`` text (or a list of lines). A missing
    secret, or one whose latest version is deleted or destroyed, means the user
    has no keys. The hub authenticates with a token or with AppRole.
    """

    url = Unicode("https://127.0.0.1:8200", config=True, help="Vault address (``VAULT_ADDR``).")
    auth_method = Unicode(
        "token", config=True,
        help="""How the hub logs in to Vault: ``token`` (``token`` / ``token_file``) or
        ``approle`` (``role_id`` with ``secret_id`` / ``secret_id_file``). AppRole logs in
        again when Vault answers 403 (an expired token).""",
    )
    token = Unicode(
        config=True,
        help="Vault token for ``auth_method = 'token'``. Defaults to ``$VAULT_TOKEN``; prefer ``token_file``.",
    )
    token_file = Unicode("", config=True, help="File holding the Vault token (read at every login).")
    role_id = Unicode("", config=True, help="AppRole role_id for ``auth_method = 'approle'``.")
    secret_id = Unicode(
        config=True,
        help="AppRole secret_id. Defaults to ``$VAULT_SECRET_ID``; prefer ``secret_id_file``.",
    )
    secret_id_file = Unicode("", config=True, help="File holding the AppRole secret_id.")
    approle_mount = Unicode("approle", config=True, help="Mount point of the AppRole auth method.")
    mount = Unicode("secret", config=True, help="Mount point of the KV version 2 engine.")
    path_template = Unicode(
        "ssh-keys/{username}", config=True,
        help="Secret path under the mount; ``{username}`` is the JupyterHub user name.",
    )
    field = Unicode("authorized_keys", config=True, help="Field of the secret that holds the keys.")
    namespace = Unicode("", config=True, help="Vault Enterprise namespace (empty: none).")
    verify = Union(
        [Bool(), Unicode()], default_value=True, config=True,
        help="TLS verification: True, False (never in production) or a CA bundle path.",
    )
    timeout = Float(5.0, config=True, help="Seconds for each HTTP request to Vault.")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._client = None

    @default("token")
    def _default_token(self):
        return os.environ.get("VAULT_TOKEN", "")

    @default("secret_id")
    def _default_secret_id(self):
        return os.environ.get("VAULT_SECRET_ID", "")

    def describe(self):
        path = self.path_template.replace("{username}", "<username>")
        return f"Vault key store {self.url} ({self.mount}/{path})"

    def config_problems(self):
        """Settings that cannot work, as messages."""
        problems = []
        if self.auth_method not in ("token", "approle"):
            problems.append(f"auth_method must be 'token' or 'approle', not {self.auth_method!r}")
        elif self.auth_method == "approle" and not self.role_id:
            problems.append("auth_method 'approle' needs role_id")
        if "{username}" not in self.path_template:
            problems.append("path_template must contain {username}")
        return problems

    @staticmethod
    def _read_file(path):
        with open(path) as f:
            return f.read().strip()

    def _login(self):
        import hvac

        client = hvac.Client(url=self.url, namespace=self.namespace or None, verify=self.verify,
                             timeout=self.timeout)
        if self.auth_method == "approle":
            secret_id = self._read_file(self.secret_id_file) if self.secret_id_file else self.secret_id
            client.auth.approle.login(role_id=self.role_id, secret_id=secret_id,
                                      mount_point=self.approle_mount)
        else:
            client.token = self._read_file(self.token_file) if self.token_file else self.token
        return client

    def _read(self, path):
        with self._lock:
            if self._client is None:
                self._client = self._login()
            client = self._client
        return client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=self.mount, raise_on_deleted_version=True)

    def fetch(self, username):
        import hvac.exceptions as hv
        from requests.exceptions import RequestException, Timeout

        path = self.path_template.format(username=check_username(username))
        where = f"{self.mount}/{path}"
        try:
            try:
                response = self._read(path)
            except hv.Forbidden:
                if self.auth_method != "approle":
                    raise
                with self._lock:  # the AppRole token may have expired: log in once more
                    self._client = None
                response = self._read(path)
        except hv.InvalidPath:
            return None  # no secret, or its latest version is deleted or destroyed
        except hv.Forbidden:
            raise self.error(f"permission denied reading {where}: check the policy of the hub's "
                             "Vault token or AppRole") from None
        except hv.InvalidRequest as e:
            raise self.error(f"login or request refused: {_first_error(e)}") from None
        except (hv.VaultDown, hv.InternalServerError, hv.BadGateway) as e:
            raise self.error(f"Vault is unavailable: {_first_error(e)}") from None
        except hv.VaultError as e:
            raise self.error(f"{type(e).__name__}: {_first_error(e)}") from None
        except Timeout:
            raise self.error(f"no answer within {self.timeout:g} s") from None
        except RequestException as e:
            raise self.error(f"cannot reach {self.url}: {type(e).__name__}") from None
        except OSError as e:
            raise self.error(f"cannot read a credential file: {e.strerror}") from None
        data = ((response or {}).get("data") or {}).get("data") or {}
        if self.field not in data:
            raise self.error(f"the secret {where} has no field {self.field!r}")
        value = data[self.field]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return "\n".join(value)
        if not isinstance(value, str):
            raise self.error(f"the field {self.field!r} of {where} must be text or a list of lines")
        return value


def _first_error(exc):
    errors = getattr(exc, "errors", None)
    if isinstance(errors, (list, tuple)) and errors:
        return str(errors[0])
    return str(exc).split(", on ")[0] or type(exc).__name__


STORE_ALIASES = {
    "file": "hardened_spawner.keys.stores.FileKeyStore",
    "vault": "hardened_spawner.keys.stores.VaultKeyStore",
}
