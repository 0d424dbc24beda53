"""Allowlist patterns of image repositories (``registry.example.org/jupyter/*``). Pure: no I/O."""

import json
import re

from ..decisions.reference import _looks_like_domain

_PATTERN_CHARS = re.compile(r"^[a-z0-9._\-/:*\[\]]+$")


def image_pattern(pattern):
    """A compiled regex for an allowlist pattern such as ``registry.example.org/jupyter/*``.

    ``*`` matches within one path component, ``**`` across components. The
    pattern is normalised like an image name: no registry means docker.io,
    and a single component means docker.io/library/.
    """
    if not isinstance(pattern, str) or not pattern or not _PATTERN_CHARS.match(pattern):
        raise ValueError(f"allowlist pattern {pattern!r} must be a lower-case registry/repository "
                         "pattern such as 'registry.example.org/jupyter/*'")
    if "@" in pattern or pattern.endswith("/") or "//" in pattern:
        raise ValueError(f"allowlist pattern {pattern!r} must name repositories (no tag, digest or empty part)")
    first, _, rest = pattern.partition("/")
    if rest and _looks_like_domain(first):
        registry, path = first, rest
    else:
        registry, path = "docker.io", pattern
    if ":" in path:
        raise ValueError(f"allowlist pattern {pattern!r} must not contain a tag")
    if registry == "docker.io" and "/" not in path and "*" not in path:
        path = f"library/{path}"
    regex = ""
    for part in re.split(r"(\*\*|\*)", f"{registry}/{path}"):
        regex += {"**": ".*", "*": "[^/]*"}.get(part, re.escape(part))
    return re.compile(f"^{regex}$")


def policy_entries(entries, known, like, problems):
    """Each configured entry of a per-image-pattern policy (JSON strings or dicts) as ``(where, entry,
    patterns, bad)``: what every such policy checks is checked here (an entry that is not a dict goes to
    ``problems`` and is skipped; unknown keys and a bad ``images`` start ``bad``); the caller adds its own."""
    for n, raw in enumerate(entries):
        entry = json.loads(raw) if isinstance(raw, str) else raw
        where = f"entry {n + 1}"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be a dict like {like}")
            continue
        unknown = sorted(set(entry) - known)
        bad = [f"unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})"] if unknown else []
        patterns = entry.get("images")
        patterns = [patterns] if isinstance(patterns, str) else patterns
        if not patterns or not isinstance(patterns, list):
            bad.append("'images' must be a pattern or a list of patterns")
        else:
            for pattern in patterns:
                try:
                    image_pattern(pattern)
                except ValueError as e:
                    bad.append(str(e))
        yield where, entry, patterns, bad
