"""Provenance rules: the image's signed SLSA build provenance against the admin's provenance policy. Pure: no I/O.

They apply to images that an ``admission_provenance_policy`` entry covers:
the context then holds the attestations
:func:`~hardened_spawner.admission.evidence.load` read from the registry,
and :func:`~hardened_spawner.admission.provenance.verdict` decides; each rule
reports what it names (docs/image-signing.md).
"""

from .. import provenance
from .base import Family

FAMILY = Family("provenance", "Build provenance (SLSA)", "image-signing.md", needs=("reference", "image", "context"))
rule = FAMILY.rule
WHEN = "an `admission_provenance_policy` entry covers the image"


def verdict(s):
    """The :class:`~..provenance.Verdict` of the image's provenance, None when no entry covers it."""
    evidence = s.context.signatures
    rules, _ = provenance.parse_rules(s.policy.provenance_policy)
    covering = provenance.rule_for(rules, s.image.name) if evidence else None
    return provenance.verdict(evidence, covering, s.image_info["Id"]) if covering else None


def _status(s, *statuses):
    found = s.once(verdict)
    if found and found.status in statuses:
        yield found.message


def _problem(s, rule_id):
    found = s.once(verdict)
    if found and rule_id in found.problems:
        yield found.problems[rule_id]


@rule("provenance.missing", "high", "enforce", "no signed SLSA provenance for the image's digest",
      "Generate SLSA provenance for the image digest in its CI (e.g. cosign attest --type slsaprovenance1 "
      "--key ... IMAGE@sha256:...), signed by a key the signature trust policy names, and push it to the "
      "image's registry.",
      protects="an image whose build nobody attested: no provenance statement, one made for another digest "
               "(copied to a re-pointed tag), or an image with no registry digest (built or tagged on the hub's host)",
      when=WHEN)
def missing(s):
    yield from _status(s, "missing")


@rule("provenance.unverifiable", "high", "enforce", "provenance could not be read from the registry",
      "Make sure the hub can reach the image's registry (admission_registry_plain_http, "
      "admission_registry_auth_file); set this rule to audit only to run images unchecked during an outage.",
      protects="the registry could not be asked (refused, timeout, HTTP 5xx, authentication failed): fail closed",
      when=WHEN)
def unverifiable(s):
    yield from _status(s, "unverifiable")


@rule("provenance.untrusted-signer", "critical", "enforce", "provenance not signed by a trusted signer",
      "Sign the provenance with a key or identity the signature trust policy (admission_signature_policy) "
      "names for this repository.",
      protects="provenance anyone could have written: signed by another key or identity, or not verifiable",
      when=WHEN)
def untrusted_signer(s):
    yield from _status(s, "untrusted")


@rule("provenance.builder-not-allowed", "critical", "enforce", "built by a builder or build type the policy does not accept",
      "Build the image on a builder (and build type) the provenance policy lists for this repository, or add "
      "the builder with the SLSA Build level it meets.",
      protects="an image built somewhere else than the build platforms the admin trusts (a developer's laptop, "
               "another CI), or with another build type",
      when=WHEN)
def builder_not_allowed(s):
    yield from _problem(s, "provenance.builder-not-allowed")


@rule("provenance.source-not-allowed", "critical", "enforce", "built from a source repository or ref the policy does not accept",
      "Build the image from a repository and ref the provenance policy's sources list (e.g. the main branch).",
      protects="an image built by a trusted builder from another repository, a fork or an unreviewed branch",
      when=WHEN)
def source_not_allowed(s):
    yield from _problem(s, "provenance.source-not-allowed")


@rule("provenance.level-too-low", "high", "enforce", "builder below the required SLSA Build level",
      "Build the image on a builder declared at the policy's min_level (SLSA Build L2: hosted and signed; "
      "L3: hardened, isolated builds).",
      protects="an image from a builder the admin accepts but declares below the level this repository requires",
      when=WHEN)
def level_too_low(s):
    yield from _problem(s, "provenance.level-too-low")
