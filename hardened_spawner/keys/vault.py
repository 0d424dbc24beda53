"""Users' SSH keys in HashiCorp Vault's KV version 2 secrets engine, through ``hvac``.

Reads take the latest version only. Writes from the SSH keys page use
check-and-set: the hub reads the current version number, applies the change
and writes with ``options.cas`` set to it; when another writer got there
first Vault answers 400 (``check-and-set parameter did not match the current
version``) and the change is applied again to the newer text, so concurrent
edits never lose a key.
"""

import os
import threading

from traitlets import Bool, Float, Int, Unicode, Union, default

from .stores import KeyStore, check_username


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
    read_only = Bool(
        False, config=True,
        help="""Refuse changes from the SSH keys page (your own tooling writes the secrets).

        When False (the default), the page writes new versions of the secret with
        check-and-set; the hub's policy then needs ``create`` and ``update`` as well as
        ``read`` on ``<mount>/data/<path>``.""",
    )
    cas_attempts = Int(
        5, config=True,
        help="How often a change is applied again when another writer changed the secret first.",
    )

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

    def read_only_reason(self):
        if self.read_only:
            return f"the {self.describe()} is read-only on this hub: ask the hub admin to change your keys"
        return ""

    def _kv(self):
        with self._lock:
            if self._client is None:
                self._client = self._login()
            return self._client.secrets.kv.v2

    def _call(self, operation, action, where):
        """``operation(kv2 api)``, logging in again once on 403 with AppRole; failures become KeyStoreError."""
        import hvac.exceptions as hv
        from requests.exceptions import RequestException, Timeout

        try:
            try:
                return operation(self._kv())
            except hv.Forbidden:
                if self.auth_method != "approle":
                    raise
                with self._lock:  # the AppRole token may have expired: log in once more
                    self._client = None
                return operation(self._kv())
        except hv.Forbidden:
            raise self.error(f"permission denied {action} {where}: check the policy of the hub's "
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

    def _where(self, username):
        path = self.path_template.format(username=check_username(username))
        return path, f"{self.mount}/{path}"

    def _text(self, data, where):
        value = data[self.field]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return "\n".join(value)
        if not isinstance(value, str):
            raise self.error(f"the field {self.field!r} of {where} must be text or a list of lines")
        return value

    def _current(self, path):
        """``(version, data)`` of the latest version: data None when it is missing, deleted or destroyed."""
        import hvac.exceptions as hv

        def read(kv):
            try:
                response = kv.read_secret_version(path=path, mount_point=self.mount,
                                                  raise_on_deleted_version=True)
            except hv.InvalidPath as e:  # 404: none, or deleted/destroyed (the body names the version)
                metadata = (((getattr(e, "json", None) or {}).get("data") or {}).get("metadata") or {})
                return int(metadata.get("version") or 0), None
            data = (response or {}).get("data") or {}
            return int((data.get("metadata") or {}).get("version") or 0), data.get("data") or {}

        return read

    def fetch(self, username):
        path, where = self._where(username)
        _, data = self._call(self._current(path), "reading", where)
        if data is None:
            return None  # no secret, or its latest version is deleted or destroyed
        if self.field not in data:
            raise self.error(f"the secret {where} has no field {self.field!r}")
        return self._text(data, where)

    def update(self, username, change):
        import hvac.exceptions as hv

        path, where = self._where(username)
        if self.read_only:
            raise self.error(self.read_only_reason())
        for _ in range(max(1, self.cas_attempts)):
            version, data = self._call(self._current(path), "reading", where)
            data = dict(data or {})  # a deleted latest version is a revocation: start from no keys
            new = change(self._text(data, where) if self.field in data else "")

            def write(kv):
                try:
                    kv.create_or_update_secret(path=path, secret={**data, self.field: new}, cas=version,
                                               mount_point=self.mount)
                except hv.InvalidRequest as e:
                    if "did not match the current version" in _first_error(e):
                        return False  # someone else wrote first: apply the change to their text
                    raise
                return True

            if self._call(write, "writing", where):
                return new
        raise self.error(f"{where} kept changing while the hub wrote it ({self.cas_attempts} attempts); "
                         "try again")


def _first_error(exc):
    errors = getattr(exc, "errors", None)
    if isinstance(errors, (list, tuple)) and errors:
        return str(errors[0])
    return str(exc).split(", on ")[0] or type(exc).__name__
