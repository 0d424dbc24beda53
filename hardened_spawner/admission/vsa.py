"""The hub's SLSA Verification Summary Attestation (VSA) of one admission decision. Pure: no I/O.

After admission decides on an image, the hub states the decision in a form
other systems (a registry, a CI gate, a deployment controller) can rely on
without repeating it: an in-toto statement whose subject is the image digest
and whose predicate (``https://slsa.dev/verification_summary/v1``) says who
verified (``verifier.id``), when, under which policy (``policy.digest``),
from which attestations, with which result (``PASSED``: admitted, possibly
with audit warnings; ``FAILED``: refused) and which SLSA Build level was
verified (the level the admin declares for the builder that made the
provenance which satisfied the provenance policy; ``SLSA_BUILD_LEVEL_0``
when no provenance policy covers the image). :mod:`.vsa_issuer` signs it.

The policy digest (:func:`policy_digest`) is the SHA-256 of a canonical JSON
document of the effective policy: every :class:`~.policy.Policy` field, the
mode of *every* rule (defaults included, so a release that changes a
default changes the digest), and the SHA-256 of each file the policy names
(trust-policy public keys, the Sigstore trust root, conda attestation keys,
the lock file, the OSV list; ``null`` for one that cannot be read). JSON
with sorted keys, ``(",", ":")`` separators and ASCII escapes, UTF-8.
The scan report directory is named by path only (its reports change with
each scan, not with the policy).
"""

import dataclasses
import hashlib
import json

from . import signing
from .rules import RULES
from ..decisions.reference import parse

PREDICATE = "https://slsa.dev/verification_summary/v1"
POLICY_URI = "urn:hardened-spawner:admission-policy:v1"  # the format of the canonical policy document
SLSA_VERSION = "1.0"


def policy_files(policy):
    """The absolute paths of the files whose content is part of ``policy`` (read them for :func:`policy_digest`)."""
    keys = [k for rule in signing.parse_rules(policy.signature_policy)[0] for k in rule.keys]
    paths = [*keys, policy.signature_trusted_root, *(p for _, p in policy.attestation_keys), policy.lock_file,
             policy.scan_osv_file]
    return tuple(sorted({p for p in paths if p}))


def canonical_policy(policy, file_digests):
    """The canonical JSON bytes of the effective ``policy``; ``file_digests``: {path: sha256 hex or None}."""
    document = dataclasses.asdict(policy)
    document["modes"] = {rule: policy.mode(rule) for rule in sorted(RULES)}
    document["files"] = {path: file_digests.get(path) for path in policy_files(policy)}
    document["format"] = POLICY_URI
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def policy_digest(policy, file_digests):
    """The SHA-256 (hex) of :func:`canonical_policy`."""
    return hashlib.sha256(canonical_policy(policy, file_digests)).hexdigest()


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the summary states, all read or decided before it is built."""

    image: str              # the reference the spawn asked for
    digest: str             # the decision's digest: ``repo@sha256:...`` or the image id ``sha256:...``
    admitted: bool
    level: int              # the SLSA Build level verified (0: none)
    policy_digest: str      # :func:`policy_digest`
    verifier_id: str
    time_verified: object   # an aware datetime
    inputs: tuple = ()      # ((uri, sha256 hex of the attestation document), ...)


def subject(image, digest):
    """``(repository, sha256 hex)`` the summary is about, from the reference asked for and the decision's
    digest (``repo@sha256:...``, or the image id of an image with no registry digest)."""
    name, _, value = digest.rpartition("@")
    if not value.startswith("sha256:") or len(value) != 71:
        raise ValueError(f"{digest!r} names no sha256 digest")
    return parse(name or image).name, value.split(":", 1)[1]


def resource_uri(image, digest):
    """``registry/repository@sha256:<hex>``: the summary's ``resourceUri``, and where the hub serves it."""
    name, hexdigest = subject(image, digest)
    return f"{name}@sha256:{hexdigest}"


def predicate(facts):
    """The VSA predicate (a dict) of ``facts``."""
    return {
        "verifier": {"id": facts.verifier_id},
        "timeVerified": facts.time_verified.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "resourceUri": resource_uri(facts.image, facts.digest),
        "policy": {"uri": POLICY_URI, "digest": {"sha256": facts.policy_digest}},
        "inputAttestations": [{"uri": uri, "digest": {"sha256": sha}} for uri, sha in facts.inputs],
        "verificationResult": "PASSED" if facts.admitted else "FAILED",
        "verifiedLevels": [f"SLSA_BUILD_LEVEL_{facts.level}"] if facts.admitted else ["FAILED"],
        "slsaVersion": SLSA_VERSION,
    }


def statement(facts):
    """The in-toto statement (bytes) of ``facts``, built and validated by sigstore's StatementBuilder."""
    from sigstore.dsse import DigestSet, StatementBuilder, Subject

    name, hexdigest = subject(facts.image, facts.digest)
    made = StatementBuilder([Subject(name=name, digest=DigestSet({"sha256": hexdigest}))],
                            PREDICATE, predicate(facts)).build()
    return made._contents
