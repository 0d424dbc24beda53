"""Docker image references: parse, normalise, and tell tags from digests.

Follows the grammar of distribution/reference (the one ``docker pull`` uses):
``[registry[:port]/]path[:tag][@algorithm:hex]``. Pure: no I/O.
"""

import re
from dataclasses import dataclass

DEFAULT_REGISTRY = "docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")


class BadReference(ValueError):
    """An image reference that Docker would not accept."""


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference, normalised the way Docker normalises it."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None
    original: str

    @property
    def name(self):
        """``registry/repository``, e.g. ``docker.io/library/python``."""
        return f"{self.registry}/{self.repository}"

    @property
    def canonical(self):
        ref = self.name
        if self.tag:
            ref += f":{self.tag}"
        if self.digest:
            ref += f"@{self.digest}"
        return ref

    @property
    def pinned(self):
        """True when the reference names content (a digest), not a movable tag."""
        return self.digest is not None

    @property
    def pull_ref(self):
        """What to hand ``docker pull``: by digest when pinned, else by tag."""
        base = self.original.split("@", 1)[0]
        if self.digest:
            repo = base.rsplit(":", 1)[0] if self.tag else base
            return f"{repo}@{self.digest}"
        return base if self.tag else f"{base}:latest"


def _looks_like_domain(component):
    return "." in component or ":" in component or component == "localhost" or component[:1] == "["


def parse(reference):
    """Parse ``reference`` into an :class:`ImageRef`; raise BadReference if Docker would refuse it."""
    if not isinstance(reference, str) or not reference.strip():
        raise BadReference(f"empty image reference: {reference!r}")
    if reference != reference.strip() or any(c.isspace() for c in reference):
        raise BadReference(f"image reference {reference!r} contains whitespace")
    if len(reference) > 255 + 128 + 72:
        raise BadReference(f"image reference is too long ({len(reference)} characters)")
    match = _REFERENCE.match(reference)
    if not match:
        raise BadReference(
            f"malformed image reference {reference!r}: expected "
            "[registry[:port]/]name[:tag][@sha256:<64 hex>] with a lower-case name"
        )
    domain, path, tag, digest = match.group("domain", "path", "tag", "digest")
    if domain and not _looks_like_domain(domain):
        # "user/repo": the first component is part of the path on Docker Hub, with its rules (lower case)
        if not re.fullmatch(_COMPONENT, domain):
            raise BadReference(f"malformed image reference {reference!r}: {domain!r} is neither a registry "
                               "(no '.' or ':') nor a lower-case repository name")
        path = f"{domain}/{path}"
        domain = None
    if domain is None and "/" not in path:
        path = f"library/{path}"
    registry = domain or DEFAULT_REGISTRY
    if registry == "index.docker.io":
        registry = DEFAULT_REGISTRY
    if digest is not None and digest.startswith("sha256:") and not _SHA256.match(digest):
        raise BadReference(
            f"malformed digest in {reference!r}: sha256 digests have 64 lower-case hex digits"
        )
    if len(path) > 255:
        raise BadReference(f"repository name in {reference!r} is longer than 255 characters")
    return ImageRef(registry, path, tag, digest, reference)
