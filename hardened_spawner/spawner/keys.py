"""SSH keys for HardenedDockerSpawner: fetch, validate, deliver.

At every start, before anything is created, the user's keys are read from
the configured key store (off the event loop, with a timeout) and validated.
A store that cannot answer refuses the spawn unless ``ssh_required`` is off.
Between ``create`` and ``start`` the accepted keys are written to
``/etc/ssh/authorized_keys/<container user>`` with the forced options; an
empty file when there are none, so a key removed from the store is gone at
the next start. The audit log gets fingerprints, never keys.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from docker.errors import APIError, NotFound
from traitlets import Bool, Float, HasTraits, Int, List, Type, Unicode

from ..errors import SpawnRefused
from ..keys.targets import CONTAINER_SSH_PORT, ssh_command
from ..keys.delivery import KEYS_DIR, container_user_name, file_from_archive, keys_archive
from ..keys.stores import STORE_ALIASES, KeyStore, KeyStoreError
from ..keys.validation import DEFAULT_FORCED_OPTIONS, DEFAULT_KEY_TYPES, KeyPolicy, check_keys, policy_problems
from ..keys.validation import render_authorized_keys

LABEL_KEYS_HELPER = "hardened-spawner.ssh-keys-helper"


class _StoreClass(Type):
    """A KeyStore subclass, by class, import string, or alias (``file``, ``vault``)."""

    def validate(self, obj, value):
        return super().validate(obj, STORE_ALIASES.get(value, value) if isinstance(value, str) else value)


class KeysMixin(HasTraits):
    """Traits and lifecycle hooks for SSH keys; mixed into HardenedDockerSpawner."""

    ssh_key_store_class = _StoreClass(
        "hardened_spawner.keys.stores.FileKeyStore", klass=KeyStore, config=True,
        help="""Where users' SSH public keys come from: ``file`` (FileKeyStore,
        ``<root>/<username>/authorized_keys``), ``vault`` (VaultKeyStore, HashiCorp
        Vault KV v2), or the import path of a ``hardened_spawner.keys.stores.KeyStore``
        subclass. Configure the store itself in its own section, e.g. ``c.FileKeyStore.root``.""",
    )
    ssh_required = Bool(
        True, config=True,
        help="""What a spawn does when the key store cannot be read (down, slow, refused).

        True: fail closed; the server is not started and the user is told which
        store failed and why. False: start the server without SSH keys (sshd then
        does not run). A user with no keys in a working store always starts.""",
    )
    ssh_store_timeout = Float(
        10.0, config=True,
        help="Seconds a spawn waits for the key store before treating it as down.",
    )
    ssh_key_types = List(
        Unicode(), list(DEFAULT_KEY_TYPES), config=True,
        help="""Public key types accepted. DSA (``ssh-dss``) is never accepted; RSA
        (``ssh-rsa``) only from ``ssh_min_rsa_bits``.""",
    )
    ssh_min_rsa_bits = Int(
        3072, config=True,
        help="Smallest RSA key accepted, in bits. Cannot be set below 3072.",
    )
    ssh_key_options = Unicode(
        DEFAULT_FORCED_OPTIONS, config=True,
        help="""authorized_keys options forced on every key, replacing whatever the store
        had. Must include ``restrict``; options that re-enable forwarding, agents, X11,
        user rc, tunnels or environment are refused. Add ``from="10.0.0.0/8"`` or
        ``expiry-time`` if you need them.""",
    )
    ssh_max_keys = Int(50, config=True, help="Most keys delivered per user; later lines are rejected.")
    ssh_gateway_host = Unicode(
        "", config=True,
        help="""Host name of the SSH gateway as users reach it, shown in the ssh command
        on the spawn page and the home page. Empty: no command is shown.""",
    )
    ssh_gateway_port = Int(8022, config=True, help="Port of the SSH gateway as users reach it.")
    ssh_host = Unicode(
        "",
        help="""Internal address of this server's sshd (port 2222), kept in the server's
        state for the SSH gateway. Set by the spawner, not by configuration.""",
    )

    _keys_executor = None  # the key stores' own threads: a hung store never blocks pulls or Docker calls
    _logins = {}  # (image id, container user) -> login name in that image
    _ssh_authorized_keys = None  # None: no key store configured; "": no keys
    _ssh_store = None

    @property
    def keys_executor(self):
        cls = KeysMixin
        if cls._keys_executor is None:
            cls._keys_executor = ThreadPoolExecutor(4, thread_name_prefix="hardened-spawner-keys")
        return cls._keys_executor

    # ---- configuration ---------------------------------------------------------
    def ssh_key_policy(self):
        return KeyPolicy(tuple(self.ssh_key_types), self.ssh_min_rsa_bits, self.ssh_key_options,
                         self.ssh_max_keys)

    def ssh_key_store(self):
        """The configured key store (one per spawner, configured from the hub config)."""
        if self._ssh_store is None:
            self._ssh_store = self.ssh_key_store_class(config=self.config, log=self.log)
        return self._ssh_store

    def ssh_config_problems(self):
        cls = type(self).__name__
        traits = {"key_types": "ssh_key_types", "min_rsa_bits": "ssh_min_rsa_bits",
                  "forced_options": "ssh_key_options", "max_keys": "ssh_max_keys"}
        problems = [(f"{cls}.{traits[field]}", m) for field, m in policy_problems(self.ssh_key_policy())]
        store = self.ssh_key_store()
        problems += [(type(store).__name__, m) for m in store.config_problems()]
        if self.ssh_store_timeout <= 0:
            problems.append((f"{cls}.ssh_store_timeout", "must be more than 0 seconds"))
        return problems

    # ---- fetch and validate (before anything is created) -------------------------
    async def fetch_ssh_keys(self):
        """Read and validate the user's keys; refuse the spawn if the store fails and SSH is required."""
        store = self.ssh_key_store()
        self._ssh_authorized_keys = None
        if not store.configured():
            return
        name = self.user.name
        self._emit(30, f"Fetching your SSH keys from the {store.describe()}")
        self._ssh_authorized_keys = ""
        fields = {"user": name, "server": self.name or "", "store": store.describe()}
        try:
            future = asyncio.wrap_future(self.keys_executor.submit(store.fetch, name))
            text = await asyncio.wait_for(future, self.ssh_store_timeout)
        except Exception as e:  # any failure of the store is "unavailable": fail closed
            if isinstance(e, asyncio.TimeoutError):
                reason = f"no answer within {self.ssh_store_timeout:g} s"
            elif isinstance(e, KeyStoreError):
                reason = e.reason
            else:
                reason = f"{type(e).__name__}: {e}"
            self.audit.write("ssh.keys", **fields, decision="unavailable", reason=reason)
            if self.ssh_required:
                raise SpawnRefused(
                    f"Your SSH keys could not be read from the {store.describe()}: {reason}. "
                    "This hub requires SSH keys at every start, so your server was not started; "
                    "try again later or tell the hub admin.",
                    reason="ssh-key-store",
                ) from None
            self._emit(32, f"SSH keys unavailable ({reason}): starting without SSH")
            return
        check = check_keys(text or "", self.ssh_key_policy())
        if check.accepted or check.rejected:  # a user without keys adds no line
            self.audit.write("ssh.keys", **fields, decision="delivered", **check.as_audit())
        for rejected in check.rejected:
            self._emit(33, f"SSH key rejected, {rejected.describe()}")
        self._ssh_authorized_keys = render_authorized_keys(check, self.ssh_key_options)
        if check.accepted:
            self._emit(35, f"{len(check.accepted)} SSH key(s) accepted: "
                           + ", ".join(check.fingerprints))

    def ssh_keys_volume(self):
        return f"{self.object_name}-ssh-keys"

    def add_ssh_mounts(self, create_kwargs):
        """With a read-only root, keys live in a per-server volume mounted read-only."""
        if self.read_only_root and self._ssh_authorized_keys is not None:
            create_kwargs.setdefault("volumes", []).append(KEYS_DIR)
            create_kwargs["host_config"].setdefault("binds", {})[self.ssh_keys_volume()] = {
                "bind": KEYS_DIR, "mode": "ro"}
        return create_kwargs

    # ---- delivery (created, not started) -----------------------------------------
    async def _on_io(self, fn, *args):
        return await asyncio.wrap_future(self.io_executor.submit(fn, *args))

    async def _container_login(self):
        """The container user's login name, read from the container's /etc/passwd (cached per image)."""
        info = await self.io_docker("inspect_container", self.container_id)
        user_spec = (info.get("Config") or {}).get("User") or ""

        async def this_container():
            return self.container_id

        return await self.login_name(info.get("Image"), user_spec, this_container), user_spec

    async def login_name(self, image_id, user_spec, container):
        """The login name of ``user_spec`` in image ``image_id``, cached per image.

        ``container`` is an async callable giving the id of a created container of
        that image to read /etc/passwd from; it is only called on a cache miss.
        """
        key = (image_id, user_spec)
        if key not in KeysMixin._logins:
            container_id = await container()
            try:
                stream, _ = await self.io_docker("get_archive", container_id, "/etc/passwd")
                passwd = file_from_archive(await self._on_io(b"".join, stream)).decode("utf-8", "replace")
            except (NotFound, ValueError):
                return None
            KeysMixin._logins[key] = container_user_name(passwd, user_spec)
        return KeysMixin._logins[key]

    async def _put_keys(self, archive):
        if not self.read_only_root:
            return await self.io_docker("put_archive", self.container_id, KEYS_DIR, archive)
        # A read-only root refuses put_archive, and so does a read-only mount: write
        # through a helper container that is created (never started) with the volume.
        host_config = self.client.create_host_config(
            binds={self.ssh_keys_volume(): {"bind": KEYS_DIR, "mode": "rw"}},
            network_mode="none", cap_drop=["ALL"], security_opt=["no-new-privileges:true"],
        )
        helper = await self.io_docker(
            "create_container", self.image, command=["true"], network_disabled=True,
            labels={LABEL_KEYS_HELPER: self.user.name}, host_config=host_config,
        )
        try:
            return await self.io_docker("put_archive", helper["Id"], KEYS_DIR, archive)
        finally:
            await self.io_docker("remove_container", helper["Id"], force=True)

    async def deliver_ssh_keys(self):
        """Write the accepted keys (or an empty file) into the created container."""
        text = self._ssh_authorized_keys
        login, user_spec = await self._container_login()
        if login is None:
            if text:
                self._emit(62, f"SSH unavailable: the image has no account for {user_spec or 'its user'}")
            return False
        try:
            await self._put_keys(keys_archive(login, text))
        except NotFound:
            if text:
                self._emit(62, f"SSH unavailable: this image has no {KEYS_DIR} directory (no sshd)")
            return False
        if text:
            command = (ssh_command(self.user.name, self.name or "", self.ssh_gateway_host,
                                   self.ssh_gateway_port, login)
                       if self.ssh_gateway_host else "ask the hub admin for the SSH gateway address")
            self._emit(65, f"SSH keys delivered; connect with: {command}")
        return bool(text)

    async def start_object(self):
        delivered = self._ssh_authorized_keys is not None and await self.deliver_ssh_keys()
        await super().start_object()
        self.ssh_host = ""
        if delivered:
            info = await self.docker("inspect_container", self.container_id)
            networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
            self.ssh_host = (networks.get(self.network_name) or {}).get("IPAddress") or ""

    async def remove_object(self):
        await super().remove_object()
        if not (self.read_only_root and self.ssh_key_store().configured()):
            return
        for attempt in range(10):  # 409 while Docker is still removing the container (auto_remove)
            try:
                await self.io_docker("remove_volume", self.ssh_keys_volume())
                return
            except NotFound:
                return
            except APIError as e:
                if e.status_code != 409 or attempt == 9:
                    self.log.warning("could not remove SSH keys volume %s: %s", self.ssh_keys_volume(), e)
                    return
                await asyncio.sleep(0.3)

    # ---- state for the gateway -------------------------------------------------
    def get_state(self):
        state = super().get_state()
        if self.ssh_host:
            state["ssh_host"] = self.ssh_host
            state["ssh_port"] = CONTAINER_SSH_PORT
        return state

    def load_state(self, state):
        super().load_state(state)
        self.ssh_host = state.get("ssh_host", "")

    def clear_state(self):
        super().clear_state()
        self.ssh_host = ""
