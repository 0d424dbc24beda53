"""SLSA build provenance against the admin's provenance policy: attestations in, verdict out. Pure: no I/O.

The provenance policy is a list of entries; the first whose ``images``
pattern matches the image's ``registry/repository`` applies::

    {"images": "registry.example.org/jupyter/**",
     "builders": {"https://github.com/slsa-framework/slsa-github-generator/.github/workflows/"
                  "generator_container_slsa3.yml@refs/tags/v2.1.0": 3},
     "sources": ["https://github.com/example/images@refs/heads/main"],
     "build_types": ["https://actions.github.io/buildtypes/workflow/v1"],
     "min_level": 3}

``builders`` maps each builder id the admin accepts to the SLSA Build level
the admin declares it meets (1: provenance exists; 2: a hosted build
platform signs it; 3: a hardened platform whose builds cannot forge or
influence it); ``sources`` are ``repository@ref`` patterns (fnmatch, ``*``
also matches ``/``) of the source the build ran from; ``build_types`` empty
means any; ``min_level`` (default 1) is the level the image must reach.

Attestations are in-toto statements in DSSE envelopes (cosign's
``sha256-<hex>.att`` tag) or Sigstore bundles (OCI referrers). One counts
when it is signed by a key (or Sigstore identity) the signature trust policy
(:mod:`.signing`) names for the image, and its ``subject`` is the image's
registry digest; :func:`verdict` then judges its predicate.
"""

import fnmatch
from dataclasses import dataclass, field

from . import attestations, signing
from .patterns import image_pattern, policy_entries

PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
PROVENANCE_V02 = "https://slsa.dev/provenance/v0.2"
PREDICATES = (PROVENANCE_V1, PROVENANCE_V02)
LEVELS = (1, 2, 3)
_ENTRY_KEYS = {"images", "builders", "sources", "build_types", "min_level"}


@dataclass(frozen=True)
class ProvenanceRule:
    patterns: tuple
    builders: tuple          # ((builder id, declared level), ...)
    sources: tuple = ()      # repository@ref patterns; empty: any source
    build_types: tuple = ()  # empty: any build type
    min_level: int = 1

    def matches(self, name):
        return any(image_pattern(p).match(name) for p in self.patterns)


def parse_rules(entries):
    """``(rules, problems)`` from the configured entries (JSON strings or dicts)."""
    rules, problems = [], []
    for where, entry, patterns, bad in policy_entries(entries, _ENTRY_KEYS, "{'images': ..., 'builders': {...}}",
                                                      problems):
        builders = entry.get("builders")
        if not isinstance(builders, dict) or not builders or not all(
                isinstance(k, str) and k and v in LEVELS and not isinstance(v, bool) for k, v in builders.items()):
            bad.append("'builders' must map each accepted builder id to the SLSA Build level (1, 2 or 3) "
                       "you declare it meets, e.g. {'https://ci.example.org/builder@v1': 3}")
        for key in ("sources", "build_types"):
            value = entry.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                bad.append(f"'{key}' must be a list of strings")
        sources = entry.get("sources", [])
        if isinstance(sources, list) and any(isinstance(v, str) and "@" not in v for v in sources):
            bad.append("'sources' are repository@ref patterns, e.g. 'https://github.com/example/images@refs/heads/main'")
        level = entry.get("min_level", 1)
        if level not in LEVELS or isinstance(level, bool):
            bad.append(f"'min_level' must be 1, 2 or 3, not {level!r}")
        if bad:
            problems += [f"{where}: {b}" for b in bad]
            continue
        rules.append(ProvenanceRule(tuple(patterns), tuple(sorted(builders.items())),
                                    tuple(entry.get("sources", ())), tuple(entry.get("build_types", ())), level))
    return rules, problems


def rule_for(rules, name):
    return next((r for r in rules if r.matches(name)), None)


# ---- reading a statement ----------------------------------------------------------------------
@dataclass(frozen=True)
class Provenance:
    """What the policy looks at in one SLSA provenance predicate."""

    predicate_type: str
    builder: str
    build_type: str
    source: str       # repository@ref ("" when the predicate names none)


def _git(uri):
    """``repository@ref`` of a ``git+https://host/repo@ref`` URI (no ``git+``, no ``.git``); "" otherwise."""
    if not isinstance(uri, str) or not uri.startswith("git+") or "@" not in uri:
        return ""
    repository, _, ref = uri[4:].rpartition("@")
    return f"{repository.removesuffix('.git')}@{ref}"


def _source_v1(definition):
    params = definition.get("externalParameters") or {}
    workflow = params.get("workflow")  # GitHub Actions' build type
    if isinstance(workflow, dict) and isinstance(workflow.get("repository"), str):
        return f"{workflow['repository'].removesuffix('.git')}@{workflow.get('ref', '')}"
    source = params.get("source")
    if isinstance(source, dict):
        source = source.get("uri")
    if _git(source):
        return _git(source)
    for dependency in definition.get("resolvedDependencies") or []:
        if isinstance(dependency, dict) and _git(dependency.get("uri")):
            return _git(dependency["uri"])
    return ""


def read_provenance(statement):
    """The :class:`Provenance` of an in-toto statement's SLSA predicate (v1 or v0.2)."""
    predicate = statement.get("predicate")
    predicate = predicate if isinstance(predicate, dict) else {}
    kind = statement.get("predicateType")
    if kind == PROVENANCE_V1:
        definition = predicate.get("buildDefinition") or {}
        builder = ((predicate.get("runDetails") or {}).get("builder") or {}).get("id", "")
        return Provenance(kind, str(builder), str(definition.get("buildType", "")), _source_v1(definition))
    config = ((predicate.get("invocation") or {}).get("configSource") or {}).get("uri")
    source = _git(config) or next((_git(m.get("uri")) for m in predicate.get("materials") or []
                                   if isinstance(m, dict) and _git(m.get("uri"))), "")
    return Provenance(kind, str((predicate.get("builder") or {}).get("id", "")),
                      str(predicate.get("buildType", "")), source)


# ---- the verdict --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """``status``: unverifiable, missing, untrusted or checked. ``problems``: rule id -> messages
    (checked: what the best attestation violates; empty when one satisfies the policy)."""

    status: str
    message: str
    problems: dict = field(default_factory=dict)
    level: int = 0
    sources: tuple = ()   # (uri, sha256) of the attestation that satisfied the policy


def judge(provenance, rule, name):
    """``{rule id: message}`` of what ``provenance`` violates under ``rule``, and the level it reaches."""
    builders = dict(rule.builders)
    problems = {}
    level = builders.get(provenance.builder, 0)
    if provenance.builder not in builders:
        problems["provenance.builder-not-allowed"] = (
            f"built by {provenance.builder or 'an unnamed builder'}, which the provenance policy for {name} does "
            f"not accept (accepted: {', '.join(builders)})")
    elif rule.build_types and provenance.build_type not in rule.build_types:
        problems["provenance.builder-not-allowed"] = (
            f"build type {provenance.build_type or '(none)'}, not one the provenance policy for {name} accepts "
            f"({', '.join(rule.build_types)})")
    if rule.sources and not any(fnmatch.fnmatchcase(provenance.source, p) for p in rule.sources):
        problems["provenance.source-not-allowed"] = (
            f"built from {provenance.source or 'no source the provenance names'}, not a source the provenance "
            f"policy for {name} accepts ({', '.join(rule.sources)})")
    if provenance.builder in builders and level < rule.min_level:
        problems["provenance.level-too-low"] = (
            f"built by {provenance.builder}, declared SLSA Build L{level}; the policy for {name} requires "
            f"L{rule.min_level}")
    return problems, level


def verdict(evidence, rule, image_id):
    """The :class:`Verdict` of the image's provenance under provenance rule ``rule``."""
    name = evidence.name
    if evidence.error:
        return Verdict("unverifiable", f"The provenance of {name} could not be read: {evidence.error}.")
    if not evidence.materials:
        return Verdict("missing", f"The image has no registry digest in {name} (it was built or tagged on this "
                       "host, not pulled), so no provenance can name it.")
    found, notes = attestations.verified(evidence, image_id, PREDICATES, "provenance")
    digests = ", ".join(m.digest for m in evidence.materials)
    good = [a for a in found if not a.problem]
    if not good:
        signed = [a for a in found if a.signer]   # trusted, but for another subject
        reasons = "; ".join(dict.fromkeys([a.problem for a in found] + notes))
        if found and not signed:
            return Verdict("untrusted", f"No provenance of {name} ({digests}) is signed by a signer the trust "
                           f"policy names for it: found {reasons}.")
        return Verdict("missing", f"{name} has no signed SLSA provenance for {digests}"
                       + (f" (found {reasons})" if reasons else "") + ".")
    judged = []
    for attestation in good:
        problems, level = judge(read_provenance(attestation.statement), rule, name)
        if not problems:
            return Verdict("checked", f"{attestation.digest}: SLSA provenance signed by {attestation.signer}, "
                           f"built by {read_provenance(attestation.statement).builder} (SLSA Build L{level}).",
                           level=level, sources=(attestation.source,))
        judged.append((problems, attestation))
    problems, attestation = min(judged, key=lambda j: len(j[0]))
    return Verdict("checked", f"The provenance of {attestation.digest} does not satisfy the policy.",
                   {rule_id: f"The provenance of {attestation.digest} (signed by {attestation.signer}) says: "
                    f"{message}." for rule_id, message in problems.items()})


def policy_problems(policy, prefix):
    """Problems with the provenance policy and scan attestations (no file I/O), as ``(setting, message)``:
    both need the signature trust policy to name the signers."""
    rules, problems = parse_rules(policy.provenance_policy)
    out = [(f"{prefix}provenance_policy", p) for p in problems]
    trust, _ = signing.parse_rules(policy.signature_policy)
    if any(t.keys or t.identities for t in trust):
        return out
    unsigned = "the signature trust policy (admission_signature_policy) names no key or identity, so no {} can be trusted"
    if rules:
        out.append((f"{prefix}provenance_policy", unsigned.format("provenance")))
    if policy.scan_attestation_max_age_days > 0:
        out.append((f"{prefix}scan_attestation_max_age_days", unsigned.format("scan attestation")))
    return out
