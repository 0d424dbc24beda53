"""Where users' SSH public keys come from, and where the keys page writes them.

A key store answers one question, synchronously: the ``authorized_keys``
text of a user, or ``None`` when the store holds no keys for them. Callers
run it off the event loop with a timeout. A store that cannot answer (down,
refused, misconfigured) raises :class:`KeyStoreError` naming itself and the
reason; the spawner then fails closed.

A writable store also applies a change to one user's text with
:meth:`KeyStore.update`: ``change(old text) -> new text``, applied under
the store's own concurrency control (a lock and an atomic rename for files,
check-and-set for Vault) and applied again on a conflict, so two concurrent
edits never lose a key.

Stores are registered in the entry point group :data:`GROUP`
(``hardened_spawner.key_stores``, in setup.cfg, as JupyterHub registers
spawners): ``ssh_key_store_class = "vault"`` names one, and the
configuration reference lists every store installed. Another package adds
a store by declaring an entry point in that group.
"""

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from dataclasses import dataclass
from importlib.metadata import entry_points

from traitlets import Bool, Int, Unicode
from traitlets.config import LoggingConfigurable
from traitlets.utils.importstring import import_item

GROUP = "hardened_spawner.key_stores"


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

    def read_only_reason(self):
        """Why users cannot change keys here ("" when they can), shown on the keys page."""
        return f"the {self.describe()} is read-only: ask the hub admin to change your keys"

    def update(self, username, change):
        """Apply ``change(old text) -> new text`` to ``username``'s keys; returns the new text."""
        raise self.error(self.read_only_reason() or "this store cannot be written")

    def use_auth_state(self, username, auth_state):
        """Give the store the user's auth_state (stores that read keys from it override this)."""

    def sources(self, username):
        """``[KeySource]``: where ``username``'s keys come from, each with its text."""
        return [KeySource(self.describe(), self.fetch(username), not self.read_only_reason())]


@dataclass(frozen=True)
class KeySource:
    """One origin of a user's keys: its name, its text (None: none) and whether users may change it."""

    name: str
    text: str
    writable: bool


class FileKeyStore(KeyStore):
    """Keys in files: ``<root>/<username>/authorized_keys`` (OpenSSH format)."""

    root = Unicode(
        "", config=True,
        help="""Directory holding one sub-directory per user with an ``authorized_keys`` file.

        Empty (the default): no key store, SSH is off. The spawner and the SSH
        gateway read it; the SSH keys page writes it unless ``read_only``. A
        root that does not exist makes every spawn fail closed (or start without
        SSH when ``ssh_required`` is off); a missing user directory or file means
        the user has no keys.""",
    )
    max_bytes = Int(
        65536, config=True,
        help="Largest ``authorized_keys`` file read, in bytes; a larger file is an error.",
    )
    read_only = Bool(
        False, config=True,
        help="""Refuse changes from the SSH keys page (your own tooling writes the files).

        When False (the default), the page writes ``<root>/<username>/authorized_keys``
        itself: under a lock, to a temporary file renamed into place, directory 0755
        and file 0644, owned by the hub's user.""",
    )

    def describe(self):
        return f"file key store {self.root}"

    def read_only_reason(self):
        if self.read_only:
            return f"the {self.describe()} is read-only on this hub: ask the hub admin to change your keys"
        return ""

    def update(self, username, change):
        check_username(username)
        if self.read_only:
            raise self.error(self.read_only_reason())
        if not os.path.isdir(self.root):
            raise self.error("its root directory does not exist")
        directory = os.path.join(self.root, username)
        try:
            os.mkdir(directory, 0o755)
            os.chmod(directory, 0o755)  # whatever the umask
        except FileExistsError:
            pass
        except OSError as e:
            raise self.error(f"cannot create {username}/: {e.strerror}") from None
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode):
            raise self.error(f"{username}/ is not a directory (a symbolic link?)")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise self.error(f"the directory {username}/ is writable by group or others, so anyone "
                             "could add keys; make it 0755 or stricter")
        with self._locked(directory, username):
            path = os.path.join(directory, "authorized_keys")
            new = change(self.read_keys_file(path, f"{username}/authorized_keys") or "")
            self._replace(directory, path, new, username)
        return new

    @contextlib.contextmanager
    def _locked(self, directory, username):
        """An exclusive lock on the user's directory: writers (threads, processes) take turns."""
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as e:
            raise self.error(f"cannot open {username}/: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _replace(self, directory, path, text, username):
        """Write ``text`` to a temporary file in ``directory`` and rename it over ``path``."""
        data = text.encode("utf-8")
        if len(data) > self.max_bytes:
            raise self.error(f"{username}/authorized_keys would be larger than {self.max_bytes} bytes")
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".authorized_keys.")
        try:
            os.fchmod(fd, 0o644)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, path)
        except OSError as e:
            raise self.error(f"cannot write {username}/authorized_keys: {e.strerror}") from None
        finally:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # the rename survives a crash
        finally:
            os.close(dir_fd)

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

    def check_trusted(self, what, info):
        """Refuse a path anyone but root or the hub's own user could have written (or planted).

        A directory others may write lets them create a user's directory and
        plant keys for that user; one owned by another account lets its owner do
        the same.
        """
        if stat.S_ISLNK(info.st_mode):
            raise self.error(f"{what} is a symbolic link; use a real directory")
        if info.st_uid not in (0, os.geteuid()):
            raise self.error(f"{what} is owned by uid {info.st_uid}, not by root or the hub's user "
                             f"(uid {os.geteuid()}), so that account could add keys; chown it")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise self.error(f"{what} is writable by group or others, so anyone could add keys; "
                             "make it 0755 (directories) or 0644 (files) or stricter")

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
            directory = os.path.dirname(path)
            self.check_trusted(f"the file {name}", info)
            self.check_trusted(f"the directory of {name}", os.lstat(directory))
            if os.path.normpath(os.path.dirname(directory)) == os.path.normpath(self.root):
                self.check_trusted(f"the key store's root {self.root}", os.stat(self.root))
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

    def read_only_reason(self):
        return ("keys on this hub are Docker Swarm secrets, which the hub cannot change: "
                "ask the hub admin to replace your secret")

    def update(self, username, change):
        raise self.error(self.read_only_reason())

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



def store_class(name):
    """The key store class registered as ``name`` in :data:`GROUP` (any case), else imported from the path ``name``."""
    registered = {ep.name.lower(): ep for ep in entry_points(group=GROUP)}
    if name.lower() in registered:
        return registered[name.lower()].load()
    return import_item(name)
