"""Read what the approved channels list, for the records that claim them (py-rattler, over HTTP).

A record's ``channel``, ``url`` and ``sha256`` are text the image builder
wrote. For each channel the admin asks to verify (``conda_verify_channels``:
channel -> the URL to read its repodata from, the admin's mirror or the channel
itself), the records that name it are looked up in that repodata: never in one
at a URL the image chose. py-rattler's Gateway fetches and caches the repodata (HTTP
caching by ETag, in ``cache_dir``); only the records' names are loaded.
"""

import asyncio
import urllib.parse
from dataclasses import dataclass

import rattler

from . import conda


class RepodataError(RuntimeError):
    """A channel's repodata could not be read, so its records cannot be verified."""


@dataclass(frozen=True)
class Listed:
    sha256: str
    md5: str
    size: int


def sources(policy):
    """``{normalised channel: URL its repodata is read from}`` of the verified channels."""
    alias = policy.channel_alias
    mirrors = conda.normalize_mirrors(policy.channel_mirrors, alias)
    out = {}
    for channel, url in policy.verify_channels:
        name = conda.normalize_channel(channel, alias, mirrors)
        out[name] = (url or (channel if "://" in channel else f"{alias.rstrip('/')}/{channel}")).rstrip("/")
    return out


def verified(policy):
    """The normalised channels whose records are checked against their repodata."""
    return set(sources(policy))


def wanted(policy, envs):
    """``{source URL: (channel, {subdirs}, {names})}`` for the records of ``envs`` naming a verified channel."""
    mirrors = conda.normalize_mirrors(policy.channel_mirrors, policy.channel_alias)
    urls = sources(policy)
    out = {}
    for env in envs:
        for record in env.records or ():
            channel = conda.channel_of(record, policy.channel_alias, mirrors)
            if channel in urls:
                _, subdirs, names = out.setdefault(urls[channel], (channel, set(), set()))
                subdirs.add(record.subdir or "noarch")
                names.add(record.name)
    return out


def _hex(value):
    return bytes(value).hex() if isinstance(value, (bytes, bytearray)) else str(value or "")


async def _query(sources, cache_dir):
    gateway = rattler.Gateway(cache_dir=cache_dir)
    out = {}
    for url, (channel, subdirs, names) in sorted(sources.items()):
        try:
            found = await gateway.query([rattler.Channel(url)], sorted(subdirs | {"noarch"}), sorted(names),
                                        recursive=False)
        except Exception as e:  # rattler raises its own types for HTTP and parse errors
            raise RepodataError(f"cannot read the repodata of {channel} from {_safe(url)}: "
                                f"{str(e).splitlines()[0]}") from None
        for records in found:
            for r in records:
                out[(channel, r.subdir, r.file_name)] = Listed(_hex(r.sha256), _hex(r.md5), r.size or 0)
    return out


def _safe(url):
    """``url`` without credentials, for messages."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=parts.hostname or "").geturl() if parts.username else url


def load(policy, envs, cache_dir=None):
    """``{(channel, subdir, file name): Listed}`` of the records in ``envs`` naming a verified channel, or the
    :class:`RepodataError` (blocking: run it off the event loop)."""
    sources = wanted(policy, envs)
    if not sources:
        return {}
    try:
        return asyncio.run(_query(sources, cache_dir))
    except RepodataError as e:
        return e
