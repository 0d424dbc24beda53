"""Load what the signature and provenance rules decide on (I/O): the registry's signatures and
attestations, keys, trust root.

:func:`load` runs on every admission, before the decision cache is asked:
its :attr:`Evidence.fingerprint` is part of the cache key, so a signature
that appears, changes or is deleted, and a registry that stops answering,
each make a new decision (fail closed) instead of reusing one made before.
Only the verification is cached; the registry is asked every time (a few
small requests: the image manifest, the ``.sig`` tag, the referrers, and the
``.att`` tag when a provenance policy covers the image).
"""

import functools
import hashlib
import json
from dataclasses import dataclass, field

from cryptography.exceptions import UnsupportedAlgorithm

from . import conda_attestations, provenance, registry, signing
from .policy import file_identity
from ..decisions.reference import parse

MAX_KEY_FILE = 64 << 10


@dataclass(frozen=True)
class Evidence:
    name: str                          # registry/repository of the image
    rule: object = None                # the signing.TrustRule that covers it, or None
    materials: tuple = ()              # registry.Material per registry digest of the local image
    keys: tuple = ()                   # (path, public key object, or a sentence why it cannot be used)
    verifier: object = None            # sigstore Verifier, when the rule names identities
    identity_policy: object = None     # sigstore policy: any of the rule's identities
    trust_problem: str = ""            # why there is no verifier although identities are named
    error: str = ""                    # the registry could not be read
    fingerprint: str = field(default="", compare=False)


def registry_digests(name, image_info, pinned=None):
    """The image's manifest digests in repository ``name`` (its RepoDigests there)."""
    found = []
    for repo_digest in image_info.get("RepoDigests") or ():
        repo, _, digest = repo_digest.partition("@")
        try:
            if parse(repo).name == name and digest.startswith("sha256:"):
                found.append(digest)
        except ValueError:
            continue
    if pinned:
        return [pinned] if pinned in found or not found else []
    return sorted(set(found))


def _read_key(path):
    try:
        with open(path, "rb") as f:
            pem = f.read(MAX_KEY_FILE)
        return signing.public_key(pem)
    except OSError as e:
        return f"cannot read: {e.strerror}"
    except (ValueError, UnsupportedAlgorithm) as e:
        return f"not a PEM public key ({e})"


@functools.lru_cache(maxsize=8)
def _verifier(trusted_root, identity):
    """A sigstore Verifier for a trust root file (or the public-good root shipped with sigstore)."""
    from sigstore.models import ClientTrustConfig, TrustedRoot
    from sigstore.verify import Verifier

    del identity  # part of the cache key only: the file's (size, mtime)
    root = TrustedRoot.from_file(trusted_root) if trusted_root else ClientTrustConfig.production(
        offline=True).trusted_root
    return Verifier(trusted_root=root)


def sigstore_verifier(identities, trusted_root):
    """``(verifier or None, policy: any of the (issuer, subject) identities, why there is no verifier)``."""
    policy = signing.TrustedIdentities(identities)
    try:
        return _verifier(trusted_root, json.dumps(file_identity(trusted_root))), policy, ""
    except Exception as e:  # sigstore raises its own errors and pydantic's for a bad file
        where = trusted_root or "the public-good trust root shipped with sigstore"
        return None, policy, f"the Sigstore trust root ({where}) cannot be used: {str(e).splitlines()[0]}"


def load(policy, ref, image_info):
    """The :class:`Evidence` for image ``ref`` (blocking network and file I/O); None when unconfigured.

    The registry is read when the trust policy requires a signature, a provenance policy entry
    covers the image or scan attestations count (the trust policy's keys and identities are then the
    trusted attestation signers)."""
    if not (policy.signature_policy or policy.provenance_policy or policy.scan_attestation_max_age_days):
        return None
    image = parse(ref)
    rules, _ = signing.parse_rules(policy.signature_policy)  # problems are refused at config time
    rule = signing.rule_for(rules, image.name)
    wants_attestations = bool(policy.scan_attestation_max_age_days or provenance.rule_for(
        provenance.parse_rules(policy.provenance_policy)[0], image.name))
    evidence = Evidence(image.name, rule)
    if (rule is not None and not rule.allow_unsigned) or wants_attestations:
        keys = tuple((path, _read_key(path)) for path in rule.keys) if rule else ()
        verifier, identity_policy, trust_problem = (sigstore_verifier(rule.identities, policy.signature_trusted_root)
                                                    if rule and rule.identities else (None, None, ""))
        materials, error = [], ""
        digests = registry_digests(image.name, image_info, image.digest)
        try:
            if digests:
                reader = registry.Reader(image.name, policy.registry_plain_http, policy.registry_timeout,
                                         policy.registry_auth_file)
                materials = [reader.read(d, attestations=wants_attestations) for d in digests]
        except registry.RegistryError as e:
            error = str(e)
        evidence = Evidence(image.name, rule, tuple(materials), keys, verifier, identity_policy, trust_problem, error)
    parts = [evidence.name, repr(rule), [m.fingerprint() for m in evidence.materials], evidence.error,
             evidence.trust_problem, [(p, k if isinstance(k, str) else _key_id(k)) for p, k in evidence.keys],
             file_identity(policy.signature_trusted_root)]
    fingerprint = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]
    return Evidence(**{**evidence.__dict__, "fingerprint": fingerprint})


def _key_id(key):
    from cryptography.hazmat.primitives import serialization

    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def file_problems(policy, prefix):
    """Problems with the public key files, the trust root and the OSV list (reads them: hub start, CI)."""
    from . import osv

    out = []
    rules, _ = signing.parse_rules(policy.signature_policy)
    identities = [i for r in rules for i in r.identities]
    identities += [i for _, value in policy.attestation_keys for i in conda_attestations.signers(value)[1]]
    for rule in rules:
        for path in rule.keys:
            key = _read_key(path)
            if isinstance(key, str):
                out.append((f"{prefix}signature_policy", f"public key {path}: {key}"))
    if identities:  # keyless image signatures, attestations or conda publish attestations
        problem = sigstore_verifier(identities, policy.signature_trusted_root)[2]
        if problem:
            out.append((f"{prefix}signature_trusted_root", problem))
    if policy.scan_osv_file:
        try:
            osv.load(policy.scan_osv_file)
        except osv.OsvError as e:
            out.append((f"{prefix}scan_osv_file", str(e)))
    return out
