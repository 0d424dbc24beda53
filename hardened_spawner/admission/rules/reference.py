"""Reference rules: on the image reference a spawn asks for, before anything is pulled. Pure: no I/O.

The checks see a :class:`~.base.Reference` subject: the policy and the parsed
reference, nothing read from the image, so
:func:`~hardened_spawner.admission.engine.reference_decision` can run them
before the image is pulled.
"""

from ..patterns import image_pattern
from .base import Family

FAMILY = Family("reference", "Reference rules", "admission-reference-rules.md", reference_only=True)
rule = FAMILY.rule


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
