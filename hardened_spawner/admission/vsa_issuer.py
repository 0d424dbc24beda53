"""Signing the hub's verification summaries (:mod:`.vsa`) and keeping the latest per image digest.

The admin's private key (``admission_vsa_key_file``: PEM, ECDSA P-256/P-384,
Ed25519 or RSA, unencrypted) must be a regular file owned by the hub's user
(or root) and readable by its owner only, like the hub's other key files;
:func:`key_problems` says what is wrong and how to fix it. The statement is
signed into a DSSE envelope by securesystemslib (``CryptoSigner``), which
anyone with the public key can verify (docs/image-signing.md). The hub keeps
the latest envelope per image in memory (:data:`STORE`) for the REST
endpoint (:mod:`..operations.summaries`); the audit log records its SHA-256.
"""

import collections
import datetime
import hashlib
import json
import logging
import os
import stat
import threading

from . import vsa

log = logging.getLogger(__name__)
PAYLOAD_TYPE = "application/vnd.in-toto+json"
MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
API_PATH = "/api/hardened-spawner/vsa/"  # under the hub's base URL, then repository@sha256:<hex> or sha256:<hex>
MAX_KEY_FILE = 64 << 10


def key_problems(path):
    """``[str]``: why the private key file ``path`` must not be used (empty: it may). Reads the key."""
    problems = _file_problems(path)
    if not problems:
        try:
            _load(path)
        except ValueError as e:
            problems.append(f"{path}: {e}")
    return problems


def _file_problems(path):
    """What is wrong with the key file's type, owner and mode (stat only)."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return [f"{path} cannot be read ({e.strerror}): make one with "
                f"'openssl genpkey -algorithm ed25519 -out {path}; chmod 600 {path}'"]
    if not stat.S_ISREG(st.st_mode):
        return [f"{path} is not a regular file (a symlink or directory): put the private key itself there"]
    problems = []
    if st.st_uid not in (0, os.geteuid()):
        problems.append(f"{path} is owned by uid {st.st_uid}, not by the hub's user ({os.geteuid()}) or root: "
                        f"chown {os.geteuid()} {path}")
    if st.st_mode & 0o077:
        problems.append(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, so others may read the hub's signing "
                        f"key: chmod 600 {path}")
    return problems


def _load(path):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    with open(path, "rb") as f:
        data = f.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise ValueError("is too large to be a PEM private key")
    try:
        return CryptoSigner(load_pem_private_key(data, None))
    except (ValueError, TypeError) as e:  # not PEM, encrypted, or a key type DSSE signers do not take
        raise ValueError(f"is not an unencrypted PEM private key securesystemslib can sign with ({e})") from None


def sign(statement, signer):
    """The DSSE envelope (JSON bytes) of ``statement`` signed by ``signer``."""
    from securesystemslib.dsse import Envelope

    envelope = Envelope(statement, PAYLOAD_TYPE, {})
    envelope.sign(signer)
    return json.dumps(envelope.to_dict(), sort_keys=True).encode()


def file_digests(paths):
    """``{path: sha256 hex, or None when it cannot be read}`` for :func:`.vsa.policy_digest`."""
    out = {}
    for path in paths:
        try:
            with open(path, "rb") as f:
                out[path] = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError:
            out[path] = None
    return out


class Store:
    """The latest envelope per resource (``repository@sha256:<hex>``) and per digest, at most ``size`` of each.

    One content can be in several repositories, each with its own policy entry and attestations: the
    summary of ``repo@digest`` is that repository's; the bare digest names the latest of any."""

    def __init__(self, size=1000):
        self.size = size
        self._lock = threading.Lock()
        self._items = collections.OrderedDict()

    def put(self, resource, envelope):
        digest = resource.rpartition("@")[2]
        with self._lock:
            for key in (resource, digest):
                self._items[key] = envelope
                self._items.move_to_end(key)
            while len(self._items) > 2 * self.size:
                self._items.popitem(last=False)

    def get(self, key):
        """The envelope of ``repository@sha256:<hex>`` or of ``sha256:<hex>``; None when none was made."""
        with self._lock:
            return self._items.get(key)


STORE = Store()
_loaded = {}  # key file -> ((inode, size, mtime), signer)
_loaded_lock = threading.Lock()


class Issuer:
    """Signs a summary of each decision with the key at ``key_file`` as ``verifier_id`` ("" key: none)."""

    def __init__(self, key_file, verifier_id):
        self.key_file = key_file
        self.verifier_id = verifier_id

    @property
    def configured(self):
        return bool(self.key_file)

    def signer(self):
        """The key, checked at each use (a replaced or loosened key file counts at once) and parsed again
        only when the file changed (parsing an RSA key validates it: hundreds of milliseconds)."""
        problems = _file_problems(self.key_file)
        if problems:
            raise ValueError("; ".join(problems))
        st = os.stat(self.key_file)
        identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        with _loaded_lock:
            cached = _loaded.get(self.key_file)
        if cached is None or cached[0] != identity:
            try:
                cached = identity, _load(self.key_file)
            except ValueError as e:
                raise ValueError(f"{self.key_file}: {e}") from None
            with _loaded_lock:
                _loaded[self.key_file] = cached
        return cached[1]

    def envelope(self, policy, image, decision, now=None):
        """``(resource uri, envelope bytes)`` of the signed summary of ``decision``; ValueError when it cannot be made."""
        facts = vsa.Facts(image, decision.digest, decision.admitted, decision.level,
                          vsa.policy_digest(policy, file_digests(vsa.policy_files(policy))), self.verifier_id,
                          now or datetime.datetime.now(datetime.timezone.utc), tuple(decision.inputs))
        return vsa.resource_uri(image, decision.digest), sign(vsa.statement(facts), self.signer())

    def issue(self, policy, image, decision, base_url="/hub/"):
        """Sign and keep the summary; the audit field that names it (None when no key is configured)."""
        if not self.configured:
            return None
        try:
            resource, envelope = self.envelope(policy, image, decision)
        except ValueError as e:
            log.error("no verification summary for %s: %s", image, e)
            return {"error": str(e)}
        STORE.put(resource, envelope)
        return {"result": "PASSED" if decision.admitted else "FAILED", "sha256": hashlib.sha256(envelope).hexdigest(),
                "uri": f"{base_url.rstrip('/')}{API_PATH}{resource}"}
