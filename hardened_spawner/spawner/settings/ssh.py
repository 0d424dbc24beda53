"""SSH settings: where users' keys come from, which keys are accepted, how users connect, the host CA."""

import time

from jupyterhub.traitlets import EntryPointType
from traitlets import Bool, Float, HasTraits, Int, List, Unicode

from ...decisions import user_certs
from ...keys import host_certs
from ...keys.stores import GROUP as KEY_STORES
from ...keys.stores import KeyStore
from ...keys.validation import DEFAULT_FORCED_OPTIONS, DEFAULT_KEY_TYPES, KeyPolicy, policy_problems
from .. import clients
from ..keys import KeySource


class SSHSettings(HasTraits):
    """Traits of SSH key delivery (see docs/ssh-admins.md)."""

    ssh_key_store_class = EntryPointType(
        "hardened_spawner.keys.stores.FileKeyStore", klass=KeyStore, entry_point_group=KEY_STORES, config=True,
        help="""Where users' SSH public keys come from: the name of a store in the
        ``hardened_spawner.key_stores`` entry point group (listed below; each store's own
        section in this reference says what it reads), or the import path of a
        ``hardened_spawner.keys.stores.KeyStore`` subclass. Configure the store itself in
        its own section, e.g. ``c.FileKeyStore.root``.""",
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
    ).tag(key_policy="key_types")
    ssh_min_rsa_bits = Int(
        3072, config=True,
        help="Smallest RSA key accepted, in bits. Cannot be set below 3072.",
    ).tag(key_policy="min_rsa_bits")
    ssh_key_options = Unicode(
        DEFAULT_FORCED_OPTIONS, config=True,
        help="""authorized_keys options forced on every key, replacing whatever the store
        had. Must include ``restrict``; options that re-enable remote forwarding, agents,
        X11, user rc, tunnels or environment are refused. ``port-forwarding`` is accepted
        only with ``permitopen`` limiting it to the container's own loopback (the default:
        what VS Code Remote-SSH needs); drop both to forbid forwarding. Add
        ``from="10.0.0.0/8"`` or ``expiry-time`` if you need them.""",
    ).tag(key_policy="forced_options")
    ssh_max_keys = Int(50, config=True, help="Most keys delivered per user; later lines are rejected.").tag(
        key_policy="max_keys")
    ssh_gateway_host = Unicode(
        "", config=True,
        help="""Host name of the SSH gateway as users reach it, shown in the ssh command
        on the spawn page and the home page. Empty: no command is shown.""",
    )
    ssh_gateway_port = Int(8022, config=True, help="Port of the SSH gateway as users reach it.")
    ssh_host_ca_key_file = Unicode(
        "ssh_host_ca_ed25519_key", config=True,
        help="""The SSH certificate authority that signs the containers' host keys: an ed25519
        private key, created (0600) on first use, its public half written to
        ``<ssh_host_ca_key_file>.pub``; keep it like the gateway's host key (backed up, readable
        only by the hub's user).

        At every start the hub makes the container's host key and signs a host certificate for
        the names the user types for that server (``alice``, ``alice.<server>``); the container
        never makes a host key. Users trust this CA with one ``@cert-authority`` line (the home
        page shows it), so their ssh checks host keys strictly; the gateway checks the
        certificate before it forwards a connection. The hub and the gateway read the same file.""",
    )
    ssh_host_ca_accepted_keys = List(
        Unicode(), config=True,
        help="""Public keys (OpenSSH lines) of other host CAs the gateway accepts and the home page
        lists beside ``ssh_host_ca_key_file``'s, for a rotation: list the new CA here before
        switching to it (users add its line), then the old one after (servers started before the
        switch keep their certificates), and drop it once those servers have restarted.""",
    )
    ssh_host_certificate_days = Float(
        30.0, config=True,
        help="""Days a container's host certificate is valid from its start (more than 0; fractions
        allowed). A server that runs longer gets a new certificate for the same host key, valid for
        another as many days, once less than a third is left (checked at the hub's polls,
        ``c.Spawner.poll_interval``); sshd uses it from the next connection. Not on Swarm, where a server running
        longer is refused by ssh and the gateway until it restarts.""",
    )
    ssh_user_certificates = Bool(
        False, config=True,
        help="""Log in to containers with short-lived user certificates only, not with users' keys.

        True: a container's keys file holds no user key, only the CA of ``ssh_host_ca_key_file``
        (and ``ssh_host_ca_accepted_keys``), trusted for that server's name (``alice``,
        ``alice.gpu``) only. Users get a certificate for a key they registered from the SSH keys
        page or its API (``GET <keys service>/api/users/<name>/certificate``), after the hub
        re-checks that they may still use it, valid for at most ``ssh_user_certificate_hours``;
        its Key ID names the hub user and server in sshd's log. The gateway still authenticates
        users by their registered keys (and asks the hub at every login and forward).""",
    )
    ssh_user_certificate_hours = Float(
        8.0, config=True,
        help="""Longest lifetime of a user certificate (``ssh_user_certificates``), in hours; a user
        may ask for less. A certificate is not revoked: keep this short (a working day).""",
    )

    _ssh_store = None

    def _key_policy_traits(self):
        """``{KeyPolicy field: trait name}``."""
        return {t.metadata["key_policy"]: n for n, t in self.traits(key_policy=lambda v: v is not None).items()}

    def ssh_key_policy(self):
        values = {field: getattr(self, name) for field, name in self._key_policy_traits().items()}
        return KeyPolicy(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def ssh_key_store(self):
        """The configured key store (one per settings object, configured from the hub config)."""
        if self._ssh_store is None:
            self._ssh_store = self.ssh_key_store_class(config=self.config, log=self.log)
        return self._ssh_store

    def key_source(self):
        """Where a spawn reads this user's keys, and what it delivers (:mod:`..keys`)."""
        return KeySource(self.ssh_key_store(), self.ssh_key_policy(), self.ssh_store_timeout, clients.executor("keys"),
                         self.ssh_container_authorization(self.user.name, self.name))

    def ssh_host_ca(self):
        """The host CA's private key (created on first use)."""
        return host_certs.load_or_create_key(self.ssh_host_ca_key_file)

    def ssh_host_ca_lines(self):
        """Public keys of every host CA accepted: the signing one first, then ``ssh_host_ca_accepted_keys``."""
        signing = host_certs.public_key_line(self.ssh_host_ca().export_public_key("openssh").decode())
        lines = [signing] + [host_certs.public_key_line(line) for line in self.ssh_host_ca_accepted_keys]
        return list(dict.fromkeys(lines))

    def ssh_container_authorization(self, username, server_name):
        """With ``ssh_user_certificates``: the keys file of ``username``'s server trusting only the CA
        for that server, else None (the users' keys are delivered)."""
        if not self.ssh_user_certificates:
            return None
        return user_certs.trusted_ca_lines(self.ssh_host_ca_lines(), username, server_name or "",
                                           self.ssh_key_options)

    def ssh_host_key(self, keys):
        """The certified host key for this start (None when no keys are delivered: no sshd)."""
        if keys is None:
            return None
        return host_certs.issue_host_key(self.ssh_host_ca(), self.user.name, self.name or "", time.time(),
                                         self.ssh_host_certificate_days * 86400)

    def ssh_config_problems(self, prefix=None):
        prefix = f"{type(self).__name__}." if prefix is None else prefix
        names = self._key_policy_traits()
        problems = [(prefix + names[field], m) for field, m in policy_problems(self.ssh_key_policy())]
        store = self.ssh_key_store()
        problems += [(type(store).__name__, m) for m in store.config_problems()]
        if self.ssh_store_timeout <= 0:
            problems.append((f"{prefix}ssh_store_timeout", "must be more than 0 seconds"))
        if self.ssh_host_certificate_days <= 0:
            problems.append((f"{prefix}ssh_host_certificate_days", "must be more than 0 days"))
        if not self.ssh_user_certificate_hours > 0:
            problems.append((f"{prefix}ssh_user_certificate_hours", "must be more than 0 hours"))
        for line in self.ssh_host_ca_accepted_keys:
            try:
                host_certs.public_key_line(line)
            except ValueError as e:
                problems.append((f"{prefix}ssh_host_ca_accepted_keys", str(e)))
        return problems
