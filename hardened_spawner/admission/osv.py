"""A local vulnerability list in OSV format, matched against an image's SBOM packages.

An air-gapped site mirrors the advisories it cares about (from osv.dev, the
GitHub Advisory Database, Debian's security tracker, or its own) into one
JSON file: a list of OSV entries, ``{"vulns": [...]}`` as osv.dev's query API
answers, or one entry. :func:`load` reads it (I/O); :func:`match` is pure.

An entry affects a package when one of its ``affected`` items names it, by
``package.purl`` (type, namespace and name compared) or by ``ecosystem`` and
``name`` (PyPI -> pypi, Debian and Debian:<release> -> deb, matched on the
source package as Debian's advisories are), and the installed version is in
``versions`` or inside an ``ECOSYSTEM``/``SEMVER`` range (introduced <= v <
fixed, or <= last_affected), compared with the ecosystem's rules: Debian's
(python-debian), PEP 440 (packaging), conda's (py-rattler). Severity comes
from ``database_specific.severity`` (GitHub's words) or else the highest
CVSS v3/v4 vector in ``severity`` (the ``cvss`` package); an entry with
neither counts as ``unknown``, which ranks like Trivy's UNKNOWN.
"""

import json
import os

import rattler
from cvss import CVSS3, CVSS4
from debian.debian_support import Version as DebianVersion
from packaging.version import Version as Pep440Version
from packageurl import PackageURL

from .reports import RANK, Vulnerability

MAX_FILE = 512 << 20
_ECOSYSTEMS = {"pypi": "pypi", "debian": "deb", "conda": "conda"}


class OsvError(ValueError):
    """The OSV file cannot be used; the message names the file and the problem."""


def load(path):
    """The OSV entries in ``path`` (a list, ``{"vulns": [...]}`` or one entry)."""
    try:
        if os.path.getsize(path) > MAX_FILE:
            raise OsvError(f"{path}: larger than {MAX_FILE >> 20} MiB")
        with open(path, "rb") as f:
            doc = json.load(f)
    except OSError as e:
        raise OsvError(f"{path}: cannot read: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise OsvError(f"{path}: not JSON ({e})") from None
    entries = doc.get("vulns", [doc]) if isinstance(doc, dict) else doc
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("id"), str)
                                                 for e in entries):
        raise OsvError(f"{path}: not OSV: expected a list of entries that each have an 'id'")
    for entry in entries:
        severity(entry)  # an unreadable severity is an error now, not a silent pass later
    return entries


def severity(entry):
    """The entry's severity word (a key of reports.RANK)."""
    word = str((entry.get("database_specific") or {}).get("severity") or "").strip().lower()
    if word:
        if word not in RANK:
            raise OsvError(f"{entry['id']}: unknown severity {word!r}")
        return word
    best = "unknown"
    for item in entry.get("severity") or []:
        vector = str((item or {}).get("score") or "")
        try:
            if vector.startswith("CVSS:3"):
                found = CVSS3(vector).severities()[0].lower()
            elif vector.startswith("CVSS:4"):
                found = CVSS4(vector).severity.lower()
            else:
                continue
        except Exception as e:  # the cvss package raises its own errors for a bad vector
            raise OsvError(f"{entry['id']}: bad CVSS vector {vector!r} ({e})") from None
        if RANK.get(found, 0) > RANK[best]:
            best = found
    return best


def _key(kind, version):
    """``version`` as a comparable value under the ecosystem's rules, or None if it is not one."""
    try:
        if kind == "deb":
            return DebianVersion(version)
        if kind == "conda":
            return rattler.Version(version)
        return Pep440Version(version)  # pypi, and SEMVER ranges of any type
    except Exception:  # each library raises its own error for a malformed version
        return None


def _in_range(kind, version, events):
    """Whether ``version`` is inside an OSV range, walking its events in version order."""
    v = _key(kind, version)
    if v is None:
        return False
    zero, bounded = [], []
    for event in events:
        for what, at in event.items():
            if what == "introduced" and at == "0":
                zero.append(what)
            elif what in ("introduced", "fixed", "last_affected") and _key(kind, at) is not None:
                bounded.append((_key(kind, at), what))
    affected = bool(zero)
    for bound, what in sorted(bounded, key=lambda e: e[0]):
        if what == "introduced" and v >= bound:
            affected = True
        elif (what == "fixed" and v >= bound) or (what == "last_affected" and v > bound):
            affected = False
    return affected


def _names(affected):
    """``(purl type, namespace or None, name)`` an affected item is about, or None."""
    package = affected.get("package") or {}
    if package.get("purl"):
        try:
            purl = PackageURL.from_string(package["purl"])
        except ValueError:
            return None
        return purl.type, purl.namespace, purl.name
    kind = _ECOSYSTEMS.get(str(package.get("ecosystem") or "").split(":")[0].lower())
    return (kind, None, str(package.get("name") or "")) if kind else None


def _normal(kind, name):
    return name.lower().replace("_", "-").replace(".", "-") if kind == "pypi" else name


def _affects(affected, package):
    names = _names(affected)
    if not names or names[0] != package.type:
        return False
    kind, namespace, name = names
    if namespace and package.namespace and namespace != package.namespace:
        return False
    candidates = {package.name}
    if kind == "deb":
        candidates.add(dict(package.qualifiers).get("upstream") or package.name)
    if _normal(kind, name) not in {_normal(kind, c) for c in candidates}:
        return False
    if package.version in (affected.get("versions") or []):
        return True
    return any(_in_range(kind, package.version, r.get("events") or [])
               for r in affected.get("ranges") or [] if r.get("type") in ("ECOSYSTEM", "SEMVER"))


def _fixed(affected):
    return ", ".join(e["fixed"] for r in affected.get("ranges") or [] for e in r.get("events") or [] if "fixed" in e)


def match(entries, packages):
    """Vulnerabilities (reports.Vulnerability) that ``entries`` report for ``packages``."""
    found = []
    for entry in entries:
        level = severity(entry)
        for affected in entry.get("affected") or []:
            for package in packages:
                if _affects(affected, package):
                    found.append(Vulnerability(entry["id"], package.purl, package.version, level, _fixed(affected)))
    return found
