"""Image signatures against the admin's trust policy: rules, verification, verdict. Pure: no I/O.

The trust policy is a list of entries, the first whose ``images`` pattern
matches the image's ``registry/repository`` applies (patterns as in
``admission_image_allowlist``)::

    {"images": "registry.example.org/jupyter/**", "keys": ["/etc/jupyterhub/cosign.pub"]}
    {"images": "ghcr.io/example/*", "identities": [{"issuer": "https://token.actions.githubusercontent.com",
                                                   "subject": "https://github.com/example/images/.github/..."}]}
    {"images": "hardened-spawner/*", "allow_unsigned": true}

An image is admitted when one signature of one of its registry digests
verifies: a cosign simple-signing signature by one of the entry's public keys
(ECDSA, RSA or Ed25519 over the payload, SHA-256), or a Sigstore bundle whose
Fulcio certificate names one of the entry's identities, checked by the
``sigstore`` package's verifier against the configured trust root. The
payload must name the digest that was signed (``docker-manifest-digest`` or
the in-toto subject) and, for simple signing, a ``docker-reference`` in the
same repository, so a signature copied to other content or another
repository does not count. :class:`.evidence.Evidence` brings the registry's
answers; :func:`verdict` decides (the rules that report it: :mod:`.rules.signature`).
"""

import base64
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtensionOID

from .patterns import image_pattern, policy_entries
from ..decisions.reference import BadReference, parse

COSIGN_TYPE = "cosign container image signature"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO = "application/vnd.in-toto+json"
_ENTRY_KEYS = {"images", "keys", "identities", "allow_unsigned"}


@dataclass(frozen=True)
class TrustRule:
    patterns: tuple
    keys: tuple = ()             # public key files (PEM)
    identities: tuple = ()       # ((issuer, subject), ...)
    allow_unsigned: bool = False

    def matches(self, name):
        return any(image_pattern(p).match(name) for p in self.patterns)


def parse_rules(entries):
    """``(rules, problems)`` from the configured entries (JSON strings or dicts)."""
    rules, problems = [], []
    for where, entry, patterns, bad in policy_entries(entries, _ENTRY_KEYS, "{'images': ..., 'keys': [...]}",
                                                      problems):
        keys, identities = entry.get("keys") or [], entry.get("identities") or []
        allow = entry.get("allow_unsigned", False)
        if not isinstance(keys, list) or not all(isinstance(k, str) and k.startswith("/") for k in keys):
            bad.append("'keys' must be a list of absolute paths of PEM public keys")
        if not isinstance(identities, list) or not all(
                isinstance(i, dict) and set(i) == {"issuer", "subject"} and all(isinstance(v, str) and v
                                                                                 for v in i.values())
                for i in identities):
            bad.append("'identities' must be a list of {'issuer': OIDC issuer URL, 'subject': certificate identity}")
        if not isinstance(allow, bool):
            bad.append("'allow_unsigned' must be true or false")
        elif not bad and not allow and not keys and not identities:
            bad.append("names no 'keys' and no 'identities', so nothing could sign these images "
                       "(set 'allow_unsigned': true to admit them unsigned)")
        elif not bad and allow and (keys or identities):
            bad.append("'allow_unsigned' with keys or identities is ambiguous: use one or the other")
        if bad:
            problems += [f"{where}: {b}" for b in bad]
            continue
        rules.append(TrustRule(tuple(patterns), tuple(keys),
                               tuple((i["issuer"], i["subject"]) for i in identities), allow))
    return rules, problems


def rule_for(rules, name):
    return next((r for r in rules if r.matches(name)), None)


@dataclass(frozen=True)
class Verdict:
    status: str          # verified, allowed-unsigned, missing, invalid, unverifiable, uncovered
    message: str


def public_key(pem):
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        raise ValueError(f"unsupported key type {type(key).__name__}")
    return key


def verify_with(key, signature, payload):
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
    else:
        key.verify(signature, payload)


def _same_repository(reference, name):
    try:
        return parse(reference).name == name
    except BadReference:
        return False


def check_simple(sig, digest, name, keys):
    """The path of the key that made ``sig`` over this digest, or raise ValueError saying why not."""
    if sig.certificate:
        raise ValueError("a keyless cosign signature in the legacy format (certificate annotation, no "
                         "inclusion proof); sign with cosign --new-bundle-format to attach a Sigstore bundle")
    try:
        payload = json.loads(sig.payload)
        critical = payload["critical"]
        signed_digest = critical["image"]["docker-manifest-digest"]
        reference = critical["identity"]["docker-reference"]
        kind = critical["type"]
    except (ValueError, TypeError, KeyError):
        raise ValueError("a signature payload that is not cosign simple signing") from None
    if kind != COSIGN_TYPE:
        raise ValueError(f"a signature of type {kind!r}, not {COSIGN_TYPE!r}")
    if signed_digest != digest:
        raise ValueError(f"a signature made for {signed_digest}, not for this content {digest}")
    if not _same_repository(reference, name):
        raise ValueError(f"a signature made for {reference}, another repository than {name}")
    try:
        signature = base64.b64decode(sig.signature, validate=True)
    except ValueError:
        raise ValueError("a signature annotation that is not base64") from None
    for path, key in keys:
        try:
            verify_with(key, signature, sig.payload)
            return path
        except InvalidSignature:
            continue
    raise ValueError("a signature by a key this hub does not trust for " + name)


def certificate_identity(cert):
    """``(SAN values, OIDC issuer)`` a Fulcio certificate names ("" when it names no issuer)."""
    from cryptography.x509 import ExtensionNotFound, ObjectIdentifier

    san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    issuer = b""
    for oid, der in (("1.3.6.1.4.1.57264.1.8", True), ("1.3.6.1.4.1.57264.1.1", False)):  # v2: a DER UTF8String
        try:
            issuer = cert.extensions.get_extension_for_oid(ObjectIdentifier(oid)).value.value
        except ExtensionNotFound:
            continue
        if der and len(issuer) > 2:
            issuer = issuer[2 + (issuer[1] & 0x7F if issuer[1] & 0x80 else 0):]
        break
    return ", ".join(str(v.value) for v in san.value), issuer.decode(errors="replace")


class TrustedIdentities:
    """A ``sigstore`` verification policy: the certificate names one of the ``(issuer, subject)`` identities.

    Unlike sigstore's ``AnyOf``, its refusal says whom the certificate names."""

    def __init__(self, identities):
        self.identities = tuple(identities)

    def verify(self, cert):
        from sigstore.errors import VerificationError
        from sigstore.verify.policy import Identity

        for issuer, subject in self.identities:
            try:
                return Identity(identity=subject, issuer=issuer).verify(cert)
            except VerificationError:
                continue
        subject, issuer = certificate_identity(cert)
        raise VerificationError(f"its certificate names {subject} from OIDC issuer {issuer or '(none)'}, not an "
                                "identity the trust policy names")


def verified_bundle(raw, verifier, identity_policy):
    """``(bundle, payload type, payload)`` of the Sigstore bundle in JSON text ``raw``, once the ``sigstore``
    verifier checked it against the trust root and ``identity_policy``; or raise ValueError saying why not."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle

    try:
        bundle = Bundle.from_json(raw)
        return (bundle, *verifier.verify_dsse(bundle, identity_policy))
    except SigstoreError as e:
        raise ValueError(f"a Sigstore bundle that does not verify: {str(e).splitlines()[0]}") from None
    except Exception as e:  # malformed bundles raise pydantic/JSON errors
        raise ValueError(f"a Sigstore bundle that cannot be read: {str(e).splitlines()[0]}") from None


def bundle_statement(raw, verifier, identity_policy):
    """``(in-toto statement, signer identity)`` of a Sigstore bundle, or raise ValueError saying why not."""
    bundle, payload_type, payload = verified_bundle(raw, verifier, identity_policy)
    if payload_type != IN_TOTO:
        raise ValueError(f"a Sigstore bundle with payload type {payload_type!r}, not an in-toto statement")
    return json.loads(payload), certificate_identity(bundle.signing_certificate)[0]


def check_bundle(raw, digest, verifier, identity_policy):
    """The signer identity of a Sigstore bundle over ``digest``, or raise ValueError saying why not."""
    statement, signer = bundle_statement(raw, verifier, identity_policy)
    if statement.get("predicateType") != SIGN_PREDICATE:
        raise ValueError(f"a Sigstore bundle with predicate {statement.get('predicateType')!r}, "
                         f"not an image signature ({SIGN_PREDICATE})")
    subjects = {(s.get("digest") or {}).get("sha256") for s in statement.get("subject") or []}
    if digest.split(":", 1)[1] not in subjects:
        raise ValueError("a Sigstore bundle signed for other content than " + digest)
    return signer


def verdict(evidence, image_id):
    """The :class:`Verdict` for an image from what :func:`.evidence.load` read."""
    rule, name = evidence.rule, evidence.name
    if rule is None:
        return Verdict("uncovered", f"{name} matches no entry of the hub's signature trust policy, so no "
                       "signer is trusted for it.")
    if rule.allow_unsigned:
        return Verdict("allowed-unsigned", f"{name} may run unsigned (trust policy: allow_unsigned).")
    if evidence.error:
        return Verdict("unverifiable", f"The signatures of {name} could not be checked: {evidence.error}.")
    if not evidence.materials:
        return Verdict("missing", f"The image has no registry digest in {name} (it was built or tagged on "
                       "this host, not pulled), so no signature can name it.")
    keys = [(path, key) for path, key in evidence.keys if not isinstance(key, str)]
    reasons, seen = [], 0
    for material in evidence.materials:
        if image_id not in material.config_digests and image_id != material.digest:
            reasons.append(f"the registry's {material.digest} does not describe the local image {image_id[:19]}")
            seen += 1  # not an absence: the registry and the host disagree
            continue
        for sig in material.simple:
            seen += 1
            try:
                signer = check_simple(sig, material.digest, name, keys)
                return Verdict("verified", f"{material.digest} signed by key {signer}.")
            except ValueError as e:
                reasons.append(str(e))
        for raw in material.bundles:
            seen += 1
            if evidence.verifier is None:
                if not evidence.trust_problem:  # else named below
                    reasons.append("a Sigstore bundle, but the trust policy names no identities for " + name)
                continue
            try:
                signer = check_bundle(raw, material.digest, evidence.verifier, evidence.identity_policy)
                return Verdict("verified", f"{material.digest} signed by {signer} (Sigstore bundle).")
            except ValueError as e:
                reasons.append(str(e))
    reasons += [f"public key {path}: {key}" for path, key in evidence.keys if isinstance(key, str)]
    if evidence.trust_problem:
        reasons.append(evidence.trust_problem)
    if not seen:
        digests = ", ".join(m.digest for m in evidence.materials)
        return Verdict("missing", f"{name} has no signature for {digests}" + (f" ({'; '.join(reasons)})"
                                                                             if reasons else "") + ".")
    shown = "; ".join(dict.fromkeys(reasons[:6]))
    return Verdict("invalid", f"No signature of {name} verifies against the trust policy. Found {shown}.")


def policy_problems(policy, prefix):
    """Problems with the trust policy and registry settings, as ``(setting, message)`` (no file I/O)."""
    _, problems = parse_rules(policy.signature_policy)
    out = [(f"{prefix}signature_policy", p) for p in problems]
    if policy.registry_timeout <= 0:
        out.append((f"{prefix}registry_timeout", f"must be more than 0, not {policy.registry_timeout}"))
    for name, path in (("signature_trusted_root", policy.signature_trusted_root),
                       ("registry_auth_file", policy.registry_auth_file),
                       ("scan_osv_file", policy.scan_osv_file)):
        if path and not path.startswith("/"):
            out.append((f"{prefix}{name}", f"{path!r} is not an absolute path"))
    return out
