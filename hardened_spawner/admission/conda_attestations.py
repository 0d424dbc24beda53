"""Publish attestations of conda packages (CEP 27) as channels serve them (CEP 50). Pure: no I/O.

A channel advertises a package's attestations with ``attestations_sha256`` on
its repodata record; the sidecar at ``<channel>/<subdir>/<file>.sigs.<sha256>``
is a JSON array of Sigstore bundles, each a DSSE envelope of an in-toto
statement. A package is attested when one bundle is signed by a signer the admin
trusts for the channel, and its statement (parsed with sigstore's in-toto
model) has the conda publish predicate type, exactly one subject naming the
package's file with its sha256, and a ``targetChannel`` that is the channel.
A signer is a public key (securesystemslib verifies the DSSE signature) or a
Sigstore identity, issuer and subject (the ``sigstore`` package's verifier
checks the bundle's Fulcio certificate, transparency-log entry and signature
against the configured trust root, offline).
"""

import base64
import hashlib
import json
import posixpath
import re
import urllib.parse

from cryptography.hazmat.primitives import serialization
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from sigstore import dsse
from sigstore_models.bundle import v1 as bundle_v1

from . import conda, signing

PREDICATE = "https://schemas.conda.org/attestations-publish-1.schema.json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_SIDECAR = 4 << 20  # bytes of one sidecar read (CEP 50: the client enforces a maximum)
SHA256 = re.compile(r"^[0-9a-f]{64}$")

ATTESTED, MISSING, UNTRUSTED, WRONG_CHANNEL = "attested", "missing", "untrusted", "wrong-channel"


def load_keys(pem):
    """The public keys in ``pem`` (one or more PEM blocks) as securesystemslib keys; ValueError if none."""
    blocks = re.findall(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", pem, re.S)
    if not blocks:
        raise ValueError("holds no PEM public key (-----BEGIN PUBLIC KEY-----)")
    try:
        return [SSlibKey.from_crypto(serialization.load_pem_public_key(b)) for b in blocks]
    except (ValueError, TypeError) as e:
        raise ValueError(f"holds a public key that cannot be used: {e}") from None


def signers(value):
    """``(PEM file paths, ((issuer, subject), ...), problems)`` of one channel's ``conda_attestation_keys`` value:
    a path, or a sequence of paths and identities (dicts, or their JSON text as the frozen policy holds them)."""
    items = [value] if isinstance(value, str) else list(value or ())
    paths, identities, problems = [], [], []
    for item in items:
        if isinstance(item, str) and item.lstrip().startswith("{"):
            try:
                item = json.loads(item)
            except ValueError:
                problems.append(f"{item[:80]!r} is not a JSON identity")
                continue
        if isinstance(item, dict):
            if set(item) == {"issuer", "subject"} and all(isinstance(v, str) and v for v in item.values()):
                identities.append((item["issuer"], item["subject"]))
            else:
                problems.append(f"{json.dumps(item)[:120]} is not an identity {{'issuer': OIDC issuer URL, "
                                "'subject': certificate identity}")
        elif isinstance(item, str) and item.startswith("/"):
            paths.append(item)
        else:
            problems.append(f"{item!r} is not an absolute path of a PEM file or a Sigstore identity")
    if not problems and not paths and not identities:
        problems.append("names no key file and no identity")
    return tuple(paths), tuple(identities), problems


def _statement(payload):
    """The in-toto statement of a verified payload (sigstore's model), or raise ValueError."""
    try:
        return dsse.Statement(payload)._inner
    except dsse.Error as e:
        raise ValueError(str(e).splitlines()[0]) from None


def _bundles(sidecar):
    try:
        items = json.loads(sidecar)
    except ValueError:
        raise ValueError("is not JSON") from None
    if not isinstance(items, list) or not items:
        raise ValueError("is not a JSON array of Sigstore bundles")
    out = []
    for item in items:
        try:
            out.append((bundle_v1.Bundle.model_validate(item), item))
        except ValueError as e:
            raise ValueError(f"holds a bundle that is not a Sigstore bundle ({str(e).splitlines()[0]})") from None
    return out


def _keyless_payload(item, sigstore):
    """The payload of a bundle with a Fulcio certificate that ``sigstore`` (verifier, identity policy) verifies,
    or raise ValueError saying why not."""
    if sigstore is None:
        raise ValueError("a Sigstore bundle with a certificate, but no identity is trusted for the channel")
    _, payload_type, payload = signing.verified_bundle(json.dumps(item), *sigstore)
    if payload_type != PAYLOAD_TYPE:
        raise ValueError(f"a Sigstore bundle with payload type {payload_type!r}")
    return payload


def verdict(sidecar, advertised, file_name, sha256, channel, keys, alias="https://conda.anaconda.org", mirrors=(),
            sigstore=None):
    """``(status, why)`` of a package's attestations: ``attested``, ``missing``, ``untrusted`` or
    ``wrong-channel``.

    ``advertised``: its repodata's ``attestations_sha256`` ("" if none); ``sidecar``: the bytes fetched from
    the content-addressed URL, or the sentence saying why they could not be; ``channel``: the normalised
    channel the statement's ``targetChannel`` must be (with ``alias`` and ``mirrors``, as
    :func:`.conda.normalize_channel`); ``keys``: the trusted keys (:func:`load_keys`); ``sigstore``:
    ``(verifier, identity policy)`` for bundles with a certificate, None when no identity is trusted.
    """
    if not advertised:
        return MISSING, "the channel advertises no attestation"
    if not SHA256.match(advertised):
        return UNTRUSTED, f"the channel advertises an attestations_sha256 that is not a sha256 ({advertised[:70]!r})"
    if isinstance(sidecar, str):
        return MISSING, sidecar
    if hashlib.sha256(sidecar).hexdigest() != advertised:
        return UNTRUSTED, "its sidecar does not hash to the attestations_sha256 the repodata lists"
    try:
        bundles = _bundles(sidecar)
    except ValueError as e:
        return UNTRUSTED, f"its sidecar {e}"
    named, keyless = [], []
    for bundle, item in bundles:
        envelope = bundle.dsse_envelope
        if envelope is None or envelope.payload_type != PAYLOAD_TYPE:
            continue
        material = bundle.verification_material
        if material.certificate is not None or material.x509_certificate_chain is not None:
            try:
                statement = _statement(_keyless_payload(item, sigstore))
            except ValueError as e:
                keyless.append(str(e))
                continue
        else:
            try:
                Envelope.from_dict({"payload": base64.b64encode(envelope.payload).decode(), "payloadType": PAYLOAD_TYPE,
                                    "signatures": [{"keyid": s.keyid or "", "sig": base64.b64encode(s.sig).decode()}
                                                   for s in envelope.signatures]}).verify(keys, 1)
                statement = _statement(envelope.payload)
            except Exception:  # securesystemslib raises its own types for a signature no key accepts
                continue
        if statement.predicate_type != PREDICATE or len(statement.subjects) != 1:
            continue
        subject = statement.subjects[0]
        if subject.name != file_name or dict(subject.digest.root).get("sha256") != sha256:
            continue
        target = (statement.predicate or {}).get("targetChannel")
        try:
            if isinstance(target, str) and conda.normalize_channel(target, alias, mirrors) == channel:
                return ATTESTED, ""
        except ValueError:
            pass
        named.append(str(target))
    if named:
        return WRONG_CHANNEL, f"its trusted attestation publishes it to {', '.join(sorted(set(named)))}"
    if sigstore is None and not keyless:
        return UNTRUSTED, "no attestation of this file and hash is signed by a trusted key"
    return UNTRUSTED, "no attestation of this file and hash is signed by a trusted key or identity" + (
        f" (found {'; '.join(dict.fromkeys(keyless))})" if keyless else "")



def of_record(record, found, alias, mirrors):
    """``(status, why)`` of ``record``'s attestations from what its channel serves (``found``:
    ``{(channel, subdir, file name): channels.Attested}``), or None when its channel has no keys."""
    channel = conda.channel_of(record, alias, mirrors)
    name = posixpath.basename(urllib.parse.urlsplit(record.url).path)
    got = found.get((channel, record.subdir or "noarch", name))
    if got is None:
        return None
    return verdict(got.sidecar, got.advertised, name, record.sha256, channel, got.keys, alias, mirrors, got.sigstore)
