"""Attestations stored for an image digest, verified against the signature trust policy. Pure: no I/O.

An attestation is an in-toto statement in a DSSE envelope (cosign's
``sha256-<hex>.att`` tag) or in a Sigstore bundle (OCI referrers), as
:func:`.evidence.load` read them. One counts when a key (or Sigstore
identity) the trust policy (:mod:`.signing`) names for the image verifies
it and its ``subject`` is the registry digest it was found under, a digest
whose manifest describes the local image. The provenance and scan rules
judge the statements that count.
"""

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from . import signing


@dataclass(frozen=True)
class Attestation:
    """One statement of a wanted predicate type found for a registry digest."""

    digest: str                 # the registry digest it was stored under
    statement: dict
    signer: str = ""            # the key path or identity that verified it; "" when none did
    problem: str = ""           # why it does not count (untrusted, other subject)
    source: tuple = ()          # (where it is stored, sha256 hex of the stored document): the VSA's input


def _envelope_statement(raw, keys):
    """``(statement, signer path or "")`` of a DSSE envelope; the statement is decoded even when no key verifies.

    Signatures are checked with every trusted key whatever their ``keyid`` (DSSE does not bind it;
    cosign leaves it empty). Raises ValueError for an envelope that cannot be read."""
    from securesystemslib.dsse import Envelope

    try:
        doc = json.loads(raw)
        for signature in doc.get("signatures") or []:
            if isinstance(signature, dict):
                signature.setdefault("keyid", "")  # optional in DSSE
        envelope = Envelope.from_dict(doc)
        statement = json.loads(envelope.payload)
        signatures = [bytes.fromhex(s.signature) for s in envelope.signatures.values()]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as e:
        raise ValueError(f"a DSSE envelope that cannot be read ({e})") from None
    if envelope.payload_type != signing.IN_TOTO or not isinstance(statement, dict):
        raise ValueError(f"a DSSE envelope of type {envelope.payload_type!r}, not an in-toto statement")
    pae = envelope.pae()
    for path, key in keys:
        for signature in signatures:
            try:
                signing.verify_with(key, signature, pae)
                return statement, path
            except (InvalidSignature, ValueError):
                continue
    return statement, ""


def _subjects(statement):
    digests = [s.get("digest") for s in statement.get("subject") or [] if isinstance(s, dict)]
    return {f"sha256:{d['sha256']}" for d in digests if isinstance(d, dict) and isinstance(d.get("sha256"), str)}


def _bundle_predicate(raw):
    """The predicate type a Sigstore bundle claims, read without verifying it (to name what failed)."""
    try:
        envelope = json.loads(raw)["dsseEnvelope"]
        return json.loads(base64.b64decode(envelope["payload"])).get("predicateType")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _source(uri, raw):
    return uri, hashlib.sha256(raw if isinstance(raw, bytes) else raw.encode()).hexdigest()


def verified(evidence, image_id, predicates, what):
    """``(attestations, notes)`` of the predicate types ``predicates`` (called ``what`` in messages)
    for the image's registry digests in ``evidence``.

    An attestation whose signer no key or identity of the trust policy verifies, or whose subject is
    not the digest it was found under, carries a ``problem``; ``notes`` say what else was seen."""
    keys = [(path, key) for path, key in evidence.keys if not isinstance(key, str)]
    found, notes = [], []
    for material in evidence.materials:
        if image_id not in material.config_digests and image_id != material.digest:
            notes.append(f"the registry's {material.digest} does not describe the local image {image_id[:19]}")
            continue
        statements = []
        att = f"{evidence.name}:{material.digest.replace(':', '-')}.att"
        for raw in material.envelopes:
            try:
                statements.append(_envelope_statement(raw, keys) + ("", _source(att, raw)))
            except ValueError as e:
                notes.append(str(e))
        for raw in material.bundles:
            if _bundle_predicate(raw) not in predicates:
                continue  # an image signature or another kind of attestation
            if evidence.verifier is None:
                statements.append(({}, "", f"a Sigstore bundle, but {evidence.trust_problem}" if evidence.trust_problem
                                    else "a Sigstore bundle, but the trust policy names no identities for "
                                    + evidence.name, ()))
                continue
            try:
                statements.append(signing.bundle_statement(raw, evidence.verifier, evidence.identity_policy)
                                  + ("", _source(f"{evidence.name}@{material.digest}#referrers", raw)))
            except ValueError as e:
                statements.append(({}, "", str(e), ()))
        for statement, signer, why, source in statements:
            if not why and statement.get("predicateType") not in predicates:
                continue  # another kind of attestation
            if why or not signer:
                found.append(Attestation(material.digest, statement, "", why or (
                    f"{what} signed by a key the trust policy does not name for {evidence.name}"
                    if keys else f"{what}, but the trust policy names no public key for {evidence.name}")))
            elif material.digest not in _subjects(statement):
                others = ", ".join(sorted(_subjects(statement))) or "no digest"
                found.append(Attestation(material.digest, statement, signer,
                                         f"{what} signed by {signer} made for {others}, not for {material.digest}"))
            else:
                found.append(Attestation(material.digest, statement, signer, source=source))
    return found, notes
