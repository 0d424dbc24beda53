"""Reference rules: on the image reference a spawn asks for, before anything is pulled. Pure: no I/O.

The checks see a :class:`~.base.Reference` subject: the policy and the parsed
reference, nothing read from the image, so
:func:`~hardened_spawner.admission.engine.reference_decision` can run them
before the image is pulled. A reference Docker would refuse is a finding of
its own, and the other rules of this family (which need it parsed) skip it.
"""

from ..patterns import image_pattern
from ...decisions.reference import _looks_like_domain
from .base import Family

FAMILY = Family("reference", "Reference rules", "admission-reference-rules.md", needs=("reference",))
rule = FAMILY.rule


def _diagnosis(ref):
    """What is wrong with a reference the parser refused, in the terms a user can act on ("" if nothing named)."""
    if not isinstance(ref, str) or not ref:
        return ""
    parts = ref.split("@", 1)[0].split("/")
    if not ref.isprintable():
        return "it contains a control character (a NUL byte, a newline, ...)"
    if any(part in ("", ".", "..") for part in parts):
        return "a path component is empty, '.' or '..' (references name repositories, not files)"
    path = parts[1:] if len(parts) > 1 and _looks_like_domain(parts[0]) else parts
    path[-1] = path[-1].split(":", 1)[0]  # a tag may be upper case
    if any(c.isupper() for part in path for c in part):
        return "repository names are lower case"
    return ""


@rule("image.reference-invalid", "high", "enforce", "image reference Docker would refuse",
      "Name the image as [registry[:port]/]repository[:tag][@sha256:<digest>], with a lower-case repository.",
      protects="references that are not image names (`../../etc/passwd`, NUL bytes, upper-case repositories, "
               "thousands of characters): they are refused before anything is asked of the daemon or a "
               "registry",
      needs=(), modes=("enforce",))
def reference_invalid(s):
    if s.image is None:
        why = _diagnosis(s.ref)
        if why:
            yield f"{s.ref[:80]!r}{'...' if len(s.ref) > 80 else ''} is not an image reference Docker accepts: {why}."
        else:
            yield f"{s.problem}."


@rule("image.not-allowlisted", "high", "enforce", "image is not on the allowlist",
      "Use an image from an allowed registry/repository, or ask the hub admin to allow this one.",
      protects="images from registries or repositories nobody vetted (typosquats, a user-supplied image "
               "name through `allowed_images = \"*\"`-style configs)",
      when="`admission_image_allowlist` is set")
def not_allowlisted(s):
    patterns = s.policy.image_allowlist
    if patterns and not any(image_pattern(p).match(s.image.name) for p in patterns):
        yield f"{s.image.name} matches none of the allowed patterns ({', '.join(patterns)})."


@rule("image.tag-latest", "medium", "enforce", "image is referenced by :latest or no tag",
      "Reference the image by a fixed tag or by digest (name@sha256:...).",
      protects="`:latest` (or no tag) moves: the image that was checked yesterday is not the one that runs today "
               "(`name:latest@sha256:...` passes: the digest decides the content)")
def tag_latest(s):
    if not s.image.pinned and s.image.tag in (None, "latest"):
        yield (f"{s.ref} uses {'the :latest tag' if s.image.tag else 'no tag (so :latest)'}, "
               "which can point at different content tomorrow.")


@rule("image.digest-required", "medium", "enforce", "image is not pinned by digest",
      "Reference the image by digest: name@sha256:<digest> (docker inspect shows RepoDigests).",
      protects="tags can be re-pushed by anyone with registry write access",
      when="`admission_require_digest = True`")
def digest_required(s):
    if s.policy.require_digest and not s.image.pinned:
        yield f"{s.ref} is referenced by tag; this hub requires name@sha256:<digest>."
