"""Signature rules: the image's registry signatures against the admin's trust policy. Pure: no I/O.

They apply when ``admission_signature_policy`` is set: the context then holds
what :func:`~hardened_spawner.admission.evidence.load` read from the registry,
and :func:`~hardened_spawner.admission.signing.verdict` decides; each rule
reports the verdict statuses it names (docs/image-signing.md).
"""

from .. import signing
from .base import Family

FAMILY = Family("signature", "Signed images, SBOMs and the OSV gate", "image-signing.md", needs=("image", "context"))
rule = FAMILY.rule
WHEN = "`admission_signature_policy` is set"


def verdict(s):
    """The :class:`~..signing.Verdict` of the image's signatures, None without a trust policy."""
    evidence = s.context.signatures
    return signing.verdict(evidence, s.image_info["Id"]) if evidence and s.policy.signature_policy else None


def _verdicts(s, *statuses):
    found = s.once(verdict)
    if found and found.status in statuses:
        yield found.message


@rule("image.signature", "critical", "enforce", "no signature verifies against the trust policy",
      "Sign the image's digest with a key or identity the hub's trust policy accepts for this repository "
      "(docs/image-signing.md), and push the signature to the image's registry.",
      protects="signatures exist but none verifies: another key or identity, a signature made for other content "
               "or another repository, a registry manifest that is not the local image; or the image matches no "
               "entry of the trust policy",
      when=WHEN)
def signature(s):
    yield from _verdicts(s, "invalid", "uncovered")


@rule("image.signature-missing", "high", "enforce", "image has no signature",
      "Push the image to its registry, sign its digest (cosign sign --key ... IMAGE@sha256:...) and pull it "
      "from there; images built or tagged on the hub's host carry no registry digest to sign.",
      protects="no signature for the image's digest; or the image has no registry digest (built or tagged on the "
               "hub's host)",
      when=WHEN)
def signature_missing(s):
    yield from _verdicts(s, "missing")


@rule("image.signature-unverifiable", "high", "enforce", "signatures could not be checked",
      "Make sure the hub can reach the image's registry (admission_registry_plain_http, "
      "admission_registry_auth_file); set this rule to audit only to run unverified images during an outage.",
      protects="the registry could not be asked (refused, timeout, HTTP 5xx, authentication failed)",
      when=WHEN)
def signature_unverifiable(s):
    yield from _verdicts(s, "unverifiable")
