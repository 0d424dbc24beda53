"""Read what the approved channels list, for the records that claim them (py-rattler, over HTTP).

A record's ``channel``, ``url`` and ``sha256`` are text the image builder
wrote. For each channel the admin asks to verify (``conda_verify_channels``:
channel -> the URL to read its repodata from, the admin's mirror or the channel
itself), the records that name it are looked up in that repodata: never in one
at a URL the image chose. py-rattler's Gateway fetches and caches the repodata (HTTP
caching by ETag, in ``cache_dir``); only the records' names are loaded.

For the channels with attestation keys (``conda_attestation_keys``),
:func:`load_attestations` reads each subdirectory's ``repodata.json`` for the
``attestations_sha256`` it advertises per package (CEP 50; py-rattler's records
do not carry the field) and fetches each advertised sidecar from its
content-addressed URL, at most :data:`.conda_attestations.MAX_SIDECAR` bytes.
"""

import asyncio
import json
import posixpath
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import rattler

from . import conda, conda_attestations

TIMEOUT = 30  # seconds per repodata or sidecar request


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


@dataclass(frozen=True)
class Attested:
    """What a channel serves about one package's attestations, and the keys and channel to judge them by."""
    advertised: str      # attestations_sha256 in its repodata ("" if none)
    sidecar: object      # the sidecar's bytes, or the sentence saying why they could not be fetched (None: none)
    keys: tuple
    sigstore: tuple = None  # (sigstore Verifier, identity policy) when the channel trusts Sigstore identities


def _get(url, limit):
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 (the admin's URL)
        data = response.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"more than {limit} bytes")
    return data


def load_attestations(policy, envs):
    """``{(channel, subdir, file name): Attested}`` for the records in ``envs`` of a channel with attestation
    keys, or a :class:`RepodataError` (blocking: run it off the event loop)."""
    keyed = dict(policy.attestation_keys)
    if not keyed:
        return {}
    mirrors = conda.normalize_mirrors(policy.channel_mirrors, policy.channel_alias)
    urls = sources(policy)
    out = {}
    for channel, value in sorted(keyed.items()):
        name = conda.normalize_channel(channel, policy.channel_alias, mirrors)
        url = urls[name]
        paths, identities, _ = conda_attestations.signers(value)  # problems stop the hub at start
        keys = []
        for path in paths:
            try:
                with open(path, "rb") as f:
                    keys += conda_attestations.load_keys(f.read())
            except (OSError, ValueError) as e:
                return RepodataError(f"cannot read the attestation keys of {name} from {path}: {e}")
        sigstore = None
        if identities:
            from .evidence import sigstore_verifier  # evidence -> policy -> rules -> this module

            verifier, identity_policy, problem = sigstore_verifier(identities, policy.signature_trusted_root)
            if problem:
                return RepodataError(f"the Sigstore identities of {name} cannot be checked: {problem}")
            sigstore = (verifier, identity_policy)
        keys = tuple(keys)
        files = {(r.subdir or "noarch", posixpath.basename(urllib.parse.urlsplit(r.url).path)) for env in envs for r in env.records or ()
                 if conda.channel_of(r, policy.channel_alias, mirrors) == name}
        for subdir in sorted({s for s, _ in files}):
            try:
                index = json.loads(_get(f"{url}/{subdir}/repodata.json", 1 << 30))
            except (OSError, ValueError) as e:
                return RepodataError(f"cannot read the repodata of {name} from {_safe(url)}/{subdir}: {e}")
            listed = {**(index.get("packages") or {}), **(index.get("packages.conda") or {})}
            for sub, file_name in sorted(f for f in files if f[0] == subdir):
                advertised = str((listed.get(file_name) or {}).get("attestations_sha256") or "")
                sidecar = None
                if advertised and conda_attestations.SHA256.match(advertised):
                    try:
                        sidecar = _get(f"{url}/{subdir}/{file_name}.sigs.{advertised}", conda_attestations.MAX_SIDECAR)
                    except (OSError, ValueError) as e:
                        sidecar = f"its advertised sidecar cannot be fetched from {_safe(url)}: {e}"
                out[(name, sub, file_name)] = Attested(advertised, sidecar, keys, sigstore)
    return out



@dataclass(frozen=True)
class Package:
    """What a package's own ``info/paths.json`` says: every path it installs, and the ``(path, sha256)`` of
    the files whose installed bytes must hash as in the archive (links and files conda rewrites for the prefix
    left out)."""
    paths: tuple
    hashes: tuple


async def _package_files(packages):
    client, gate = rattler.Client(), asyncio.Semaphore(8)

    async def one(key, url):
        async with gate:
            try:
                paths = await rattler.PathsJson.from_remote_url(client, url)
            except Exception as e:  # rattler raises its own types for HTTP and archive errors
                raise RepodataError(f"cannot read info/paths.json of {_safe(url)}: {str(e).splitlines()[0]}") from None
        if paths is None:
            raise RepodataError(f"cannot read info/paths.json of {_safe(url)}: the archive has none")
        return key, Package(tuple(str(p.relative_path) for p in paths.paths),
                            tuple((str(p.relative_path), bytes(p.sha256).hex()) for p in paths.paths
                                  if p.sha256 and p.path_type.hardlink and not p.prefix_placeholder))

    return dict(await asyncio.gather(*(one(key, url) for key, url in sorted(packages.items()))))


OWNERSHIP_RULES = ("python.unowned-module", "python.unowned-pth", "conda.pip-pollution")


def wants_package_files(policy):
    """True when a rule on reads the verified packages' ``info/paths.json``: their files' hashes
    (conda.file-modified) or what they own (:data:`OWNERSHIP_RULES`)."""
    hashes = policy.verify_files and policy.mode("conda.file-modified") != "off"
    return bool(policy.verify_channels) and (hashes or any(policy.mode(r) != "off" for r in OWNERSHIP_RULES))


def load_package_files(policy, envs, listed):
    """``{(channel, subdir, file name): Package}`` from the own ``info/paths.json`` (read with py-rattler from the
    channel's URL, only the archive's info part) of each package the verified channel's repodata (``listed``, what
    :func:`load` returned) lists with the record's hashes; ``listed`` itself when it is a :class:`RepodataError`,
    or the :class:`RepodataError` of a paths.json that cannot be read."""
    if isinstance(listed, RepodataError):
        return listed
    mirrors = conda.normalize_mirrors(policy.channel_mirrors, policy.channel_alias)
    urls = sources(policy)
    packages = {}
    for env in envs:
        for record in env.records or ():
            if conda.channel_check(record, listed, set(urls), policy.channel_alias, mirrors) != "listed":
                continue
            channel = conda.channel_of(record, policy.channel_alias, mirrors)
            name = posixpath.basename(urllib.parse.urlsplit(record.url).path)
            subdir = record.subdir or "noarch"
            packages[(channel, subdir, name)] = f"{urls[channel]}/{subdir}/{name}"
    if not packages:
        return {}
    try:
        return asyncio.run(_package_files(packages))
    except RepodataError as e:
        return e
