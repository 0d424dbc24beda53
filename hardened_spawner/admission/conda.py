"""Conda environment policy on an image's installed records. Pure except for
:func:`parse_records`, which hands the records to py-rattler through a
temporary directory (its parser reads files).

Records are ``<prefix>/conda-meta/*.json`` as conda, mamba and pixi write them.
py-rattler parses them with conda's semantics; a record it rejects (for
example one without ``url``) is read as raw JSON, and one that is not even
that is reported by name. Channels are compared on normalised URLs
(credentials, tokens, platform subdirectories and scheme removed; declared
mirrors mapped to the channel they mirror), because ``MatchSpec.matches``
ignores the channel.
"""

import datetime
import json
import os
import posixpath
import re
import tempfile
import urllib.parse
from dataclasses import dataclass

import rattler

from .python_eol import eol_date

_SUBDIR = re.compile(r"^(noarch|(linux|osx|win|emscripten|wasi|zos|freebsd)-[a-z0-9_]+)$")
DEFAULTS_CHANNELS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")


def normalize_channel(value, alias="https://conda.anaconda.org", mirrors=()):
    """``host/path`` of a channel name or URL; raise ValueError if it is neither."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"channel {value!r} is empty")
    value = value.strip()
    if "://" not in value:
        if value.startswith("/"):
            value = "file://" + value
        elif re.fullmatch(r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*/?", value):
            value = alias.rstrip("/") + "/" + value
        else:
            raise ValueError(f"channel {value!r} is neither a channel name nor a URL")
    parts = urllib.parse.urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "file", "s3", "gcs", "oci"):
        raise ValueError(f"channel {value!r}: unsupported scheme {parts.scheme!r}")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) >= 2 and segments[0] == "t":  # anaconda.org token: /t/<token>/channel
        segments = segments[2:]
    if segments and segments[-1].endswith((".conda", ".tar.bz2")):
        segments.pop()
    if segments and _SUBDIR.match(segments[-1]):
        segments.pop()
    path = "/".join(segments)
    if scheme == "file":
        normalized = "file:///" + path
    else:
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"channel {value!r} has a bad port") from None
        host = (parts.hostname or "").lower()
        if not host:
            raise ValueError(f"channel {value!r} has no host")
        if port and port not in (80, 443):
            host += f":{port}"
        normalized = f"{host}/{path}".rstrip("/")
    for mirror, target in mirrors:
        if normalized == mirror or normalized.startswith(mirror + "/"):
            return target + normalized[len(mirror):]
    return normalized


def normalize_mirrors(mirrors, alias):
    pairs = [(normalize_channel(m, alias), normalize_channel(t, alias)) for m, t in mirrors]
    return tuple(sorted(pairs, key=lambda p: -len(p[0])))  # longest prefix first


def allowed_set(channels, alias, mirrors=()):
    out = set()
    for channel in channels:
        if channel.strip() == "defaults":
            out.update(normalize_channel(c, alias, mirrors) for c in DEFAULTS_CHANNELS)
        else:
            out.add(normalize_channel(channel, alias, mirrors))
    return out


def spec_problem(spec):
    try:
        match = rattler.MatchSpec(spec)
    except Exception as e:  # rattler raises its own exception types
        return f"invalid MatchSpec {spec!r}: {e}"
    if match.name is None:
        return f"MatchSpec {spec!r} must name a package"
    return None


def dist_name(entry):
    """Normalised distribution name of a ``*.dist-info``/``*.egg-info`` directory name."""
    stem = entry.rsplit(".", 1)[0]
    name = stem.split("-", 1)[0] if entry.endswith(".egg-info") else stem.rsplit("-", 1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Record:
    name: str
    version: str
    build: str
    build_number: int
    subdir: str
    url: str
    channel_source: str          # the URL (or channel) the channel is taken from
    md5: str
    sha256: str
    files: tuple
    source: str                  # conda-meta file name
    matchable: object            # rattler record for MatchSpec.matches
    hashes: tuple = ()           # (path, sha256) of the files paths_data hashes that conda installs unchanged
    size: int = 0                # the package archive's size in bytes, 0 when the record has none

    def label(self):
        return f"{self.name} {self.version} ({self.build})"


def _hex(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return value or ""


def file_hashes(data):
    """``(path, sha256)`` of each file ``paths_data`` hashes, except those conda rewrites at install
    (a prefix placeholder) and links: what the installed file must still hash to."""
    paths = (data.get("paths_data") or {}).get("paths") if isinstance(data.get("paths_data"), dict) else None
    return tuple((p["_path"], p["sha256"]) for p in paths or () if isinstance(p, dict)
                 and isinstance(p.get("_path"), str) and isinstance(p.get("sha256"), str)
                 and p.get("path_type", "hardlink") == "hardlink" and not p.get("prefix_placeholder"))


def _from_rattler(record, source, files, hashes=()):
    """``files`` from the record's JSON: rattler's ``record.files`` makes a Path of each (slow)."""
    return Record(
        name=record.name.normalized, version=str(record.version), build=str(record.build),
        build_number=record.build_number, subdir=record.subdir, url=record.url or "",
        channel_source=record.url or (record.channel or ""), md5=_hex(record.md5), sha256=_hex(record.sha256),
        files=tuple(f for f in files if isinstance(f, str)), source=source, matchable=record, hashes=hashes,
        size=record.size or 0,
    )


def _from_raw(data, source):
    """A record rattler rejected, read from its JSON; raises ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in ("name", "version", "build") if not isinstance(data.get(k), str) or not data.get(k)]
    if missing:
        raise ValueError("missing " + ", ".join(missing))
    try:
        matchable = rattler.PackageRecord(
            name=data["name"], version=data["version"], build=rattler.BuildString(data["build"]),
            build_number=int(data.get("build_number") or 0), subdir=str(data.get("subdir") or "noarch"),
        )
    except Exception as e:  # rattler refuses the name, version or build
        raise ValueError(str(e)) from None
    files = data.get("files") or []
    return Record(
        name=matchable.name.normalized, version=data["version"], build=data["build"],
        build_number=int(data.get("build_number") or 0), subdir=str(data.get("subdir") or ""),
        url=str(data.get("url") or ""), channel_source=str(data.get("url") or data.get("channel") or ""),
        md5=str(data.get("md5") or ""), sha256=str(data.get("sha256") or ""),
        files=tuple(str(f) for f in files if isinstance(f, str)), source=source, matchable=matchable,
        hashes=file_hashes(data), size=data["size"] if isinstance(data.get("size"), int) else 0,
    )


def parse_records(raw):
    """``(records, problems)`` from ``{file name: JSON bytes}``; problems are ``(file, message)``."""
    records, problems = [], []
    with tempfile.TemporaryDirectory(prefix="hs-conda-meta-") as tmp:
        for name in sorted(raw):
            path = os.path.join(tmp, os.path.basename(name))
            with open(path, "wb") as f:
                f.write(raw[name])
            try:
                record = rattler.PrefixRecord.from_path(path)
                data = json.loads(raw[name])
                records.append(_from_rattler(record, name, data.get("files") or (), file_hashes(data)))
                continue
            except Exception as rattler_error:  # fall back to the raw JSON
                reason = str(rattler_error).splitlines()[0]
            try:
                records.append(_from_raw(json.loads(raw[name]), name))
            except json.JSONDecodeError as e:
                problems.append((name, f"not JSON ({e.msg} at line {e.lineno} column {e.colno})"))
            except (ValueError, TypeError) as e:
                problems.append((name, f"{e} (py-rattler: {reason})"))
    return records, problems


def channel_of(record, alias, mirrors):
    if not record.channel_source:
        return None
    try:
        return normalize_channel(record.channel_source, alias, mirrors)
    except ValueError:
        return None


def disallowed_channels(records, allowed, alias, mirrors):
    """Records whose channel is not in ``allowed`` (normalised), as sentences."""
    out = []
    for record in records:
        channel = channel_of(record, alias, mirrors)
        if channel is None:
            out.append(f"{record.label()} has no channel or URL in {record.source}")
        elif channel not in allowed:
            out.append(f"{record.label()} comes from {channel}")
    return out


def python_version(records):
    for record in records:
        if record.name == "python":
            match = re.match(r"^(\d+)\.(\d+)", record.version)
            if match:
                return f"{match[1]}.{match[2]}", record
    return None, None


def python_eol(records, today, warn_days, overrides=()):
    """``("eol"|"soon", sentence)`` for the environment's Python, or None."""
    version, record = python_version(records)
    if not version:
        return None
    date = eol_date(version, overrides)
    if date is None:
        return None
    if today >= date:
        return "eol", f"Python {record.version} reached its end of life on {date.isoformat()}"
    if warn_days and today + datetime.timedelta(days=warn_days) >= date:
        return "soon", f"Python {record.version} reaches its end of life on {date.isoformat()} ({(date - today).days} days)"
    return None


def _spec_channel_matches(spec, record, alias, mirrors):
    if spec.channel is None:
        return True
    want = normalize_channel(spec.channel.base_url, alias, mirrors)
    return channel_of(record, alias, mirrors) == want


def denied(records, specs, alias, mirrors):
    out = []
    for text in specs:
        spec = rattler.MatchSpec(text)
        for record in records:
            if spec.matches(record.matchable) and _spec_channel_matches(spec, record, alias, mirrors):
                out.append(f"{record.label()} matches the denied spec '{text}'")
    return out


def missing_required(records, specs, alias, mirrors):
    out = []
    for text in specs:
        spec = rattler.MatchSpec(text)
        if any(spec.matches(r.matchable) and _spec_channel_matches(spec, r, alias, mirrors) for r in records):
            continue
        same = [r.label() for r in records if r.name == spec.name.normalized]
        out.append(f"'{text}' is required, installed: {', '.join(same)}" if same else f"'{text}' is required but not installed")
    return out


def pip_pollution(records, prefix, listing, allowlist):
    """``*.dist-info``/``*.egg-info`` in site-packages (``{dir: [entries]}``) no conda record owns."""
    allowed = {re.sub(r"[-_.]+", "-", a).lower() for a in allowlist}
    out = []
    for directory, entries in sorted(listing.items()):
        rel = posixpath.relpath(directory, prefix) + "/"
        owned = {f[len(rel):].split("/", 1)[0] for r in records for f in r.files if f.startswith(rel)}
        for entry in entries:
            if entry.endswith((".dist-info", ".egg-info")) and entry not in owned and dist_name(entry) not in allowed:
                out.append(entry)
    return out


def channel_check(record, listed, channels, alias, mirrors):
    """``listed``, ``not listed`` or ``not checked`` (its channel is not verified, or its repodata could
    not be read: ``listed`` is not a dict): what :func:`not_from_channel` found for ``record``."""
    if not isinstance(listed, dict) or channel_of(record, alias, mirrors) not in channels:
        return "not checked"
    return "not listed" if not_from_channel([record], listed, channels, alias, mirrors) else "listed"


def not_from_channel(records, listed, channels, alias, mirrors):
    """Records naming one of ``channels`` whose file and hashes that channel's repodata (``listed``:
    ``{(channel, subdir, file name): Listed}``) does not list, as sentences."""
    out = []
    for record in records:
        channel = channel_of(record, alias, mirrors)
        if channel not in channels:
            continue
        name = posixpath.basename(urllib.parse.urlsplit(record.url).path)
        known = listed.get((channel, record.subdir or "noarch", name))
        if not record.sha256:
            out.append(f"{record.label()} has no sha256 in {record.source}")
        elif known is None:
            out.append(f"{record.label()}: {channel} lists no {record.subdir}/{name or '(no url)'}")
        elif known.sha256 != record.sha256:
            out.append(f"{record.label()}: sha256 {record.sha256[:16]}... is not the {known.sha256[:16]}... "
                       f"that {channel} lists for {name}")
        elif record.md5 and known.md5 and known.md5 != record.md5:
            out.append(f"{record.label()}: md5 {record.md5} is not the {known.md5} that {channel} lists for {name}")
        elif record.size and known.size and known.size != record.size:
            out.append(f"{record.label()}: size {record.size} is not the {known.size} that {channel} lists for {name}")
    return out


def modified_files(records, prefix, actual, packages=None, hashed_dirs=()):
    """Files whose sha256 in the image (``actual``: ``{absolute path: hex or None}``,
    None when absent or not a regular file) is not the one their record lists, as sentences.

    ``packages``: ``{record source: ((path, sha256), ...)}`` from the packages' own ``info/paths.json``
    (what the channel serves), used instead of the record's ``paths_data`` for those records; then a
    file in ``hashed_dirs`` (absolute: where every file the records hash was hashed) that the package
    hashes but was not hashed is one the record does not list, which means the record was edited."""
    out = []
    for record in records:
        own = (packages or {}).get(record.source)
        for path, sha256 in own if own is not None else record.hashes:
            full = posixpath.join(prefix, path)
            if full not in actual:
                if own is not None and full.startswith(tuple(d + "/" for d in hashed_dirs)):
                    out.append(f"{full} of {record.label()} is hashed by its package but not by its record")
                continue
            if actual[full] is None:
                out.append(f"{full} of {record.label()} is missing or not a regular file")
            elif actual[full] != sha256:
                out.append(f"{full} of {record.label()} was changed after install")
    return out
