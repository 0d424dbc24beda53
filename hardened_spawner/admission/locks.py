"""Lock files an environment must match, and the differences from what is installed.

Three formats: ``conda list --explicit --md5`` files (``@EXPLICIT`` URLs with
``#md5``), conda-lock files and pixi.lock environments (both read by
py-rattler's LockFile). Comparison is by package name: missing, extra,
different version/build, and different md5 when both sides have one.
"""

import re
import urllib.parse
from dataclasses import dataclass

import rattler
from rattler.explicit_environment import ExplicitEnvironmentSpec

_HASH = re.compile(r"^(?:md5:)?([0-9a-f]{32})$|^sha256:([0-9a-f]{64})$")


class LockError(ValueError):
    """A lock file that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Locked:
    name: str
    version: str
    build: str
    md5: str = ""


def _from_url(url, path):
    base, _, fragment = url.partition("#")
    filename = urllib.parse.unquote(base.rsplit("/", 1)[-1])
    for suffix in (".conda", ".tar.bz2"):
        if filename.endswith(suffix):
            stem = filename[: -len(suffix)]
            break
    else:
        raise LockError(f"{path}: {url} is not a conda package URL (.conda or .tar.bz2)")
    parts = stem.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        raise LockError(f"{path}: cannot read name-version-build from {filename}")
    md5 = ""
    if fragment:
        match = _HASH.match(fragment.lower())
        if not match:
            raise LockError(f"{path}: bad hash '#{fragment}' for {filename}")
        md5 = match[1] or ""
    return Locked(parts[0].lower(), parts[1], parts[2], md5)


def _explicit(path, text):
    try:
        spec = ExplicitEnvironmentSpec.from_str(text)
    except Exception as e:  # rattler's parse errors
        raise LockError(f"{path}: not a valid explicit environment file: {str(e).splitlines()[0]}") from None
    return [_from_url(p.url, path) for p in spec.packages]


def _lockfile(path, environment, platform):
    try:
        lock = rattler.LockFile.from_path(path)
    except Exception as e:  # rattler's parse errors
        raise LockError(f"{path}: not a valid conda-lock or pixi.lock file: {str(e).splitlines()[0]}") from None
    env = lock.environment(environment)
    if env is None:
        names = ", ".join(name for name, _ in lock.environments()) or "none"
        raise LockError(f"{path}: no environment {environment!r} (environments: {names})")
    platforms = {str(p): p for p in env.platforms()}
    if platform not in platforms:
        raise LockError(f"{path}: environment {environment!r} has no platform {platform!r} "
                        f"(platforms: {', '.join(platforms) or 'none'})")
    return [
        Locked(r.name.normalized, str(r.version), str(r.build), r.md5.hex() if r.md5 else "")
        for r in env.conda_repodata_records_for_platform(platforms[platform])
    ]


def load(path, environment="default", platform="linux-64"):
    """The locked packages of ``path`` (any of the three formats)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise LockError(f"{path}: cannot read: {e}") from None
    if re.search(r"^@EXPLICIT\s*$", text, re.MULTILINE):
        packages = _explicit(path, text)
    else:
        packages = _lockfile(path, environment, platform)
    names = [p.name for p in packages]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise LockError(f"{path}: packages listed twice: {', '.join(duplicates)}")
    if not packages:
        raise LockError(f"{path}: lists no packages")
    return packages


def differences(records, locked):
    """What differs between installed ``records`` and ``locked`` packages, as sentences."""
    installed = {r.name: r for r in records}
    wanted = {p.name: p for p in locked}
    out = []
    for name in sorted(wanted.keys() - installed.keys()):
        p = wanted[name]
        out.append(f"{name} {p.version} ({p.build}) is locked but not installed")
    for name in sorted(installed.keys() - wanted.keys()):
        out.append(f"{installed[name].label()} is installed but not in the lock file")
    for name in sorted(installed.keys() & wanted.keys()):
        r, p = installed[name], wanted[name]
        if (r.version, r.build) != (p.version, p.build):
            out.append(f"{name}: locked {p.version} ({p.build}), installed {r.version} ({r.build})")
        elif r.md5 and p.md5 and r.md5 != p.md5:
            out.append(f"{name} {r.version}: md5 {r.md5} differs from the locked {p.md5}")
    return out
