"""Where an image's Python environments and importable files are, from names and records. Pure: no I/O.

The readers (:mod:`.facts`, :mod:`.layers`) use these to decide what to read:
home directories, the site-packages of a conda environment, the top-level
names conda records own there (for the masks and the RECORD files to keep),
and the conda prefixes found anywhere on the image's filesystem.
"""

import json
import posixpath
import re

from .conda import file_hashes

MAX_MASKS = 64               # empty volumes over owned site-packages directories, per probe
ENV_RECORD = re.compile(r"^/[^/]+/conda-meta/[^/]+\.json$")
_PYTHON_RECORD = re.compile(r"^python-(\d+)\.(\d+)[.\d]*-[^-]+\.json$")
_DIST_RECORD = re.compile(r"/site-packages/[^/]+\.dist-info/RECORD$")  # pip's file list per distribution


def homes(passwd):
    """Home directories from /etc/passwd: root's and every human user's (uid 0 or >= 1000)."""
    found = {"/root"}
    for line in passwd.decode("utf-8", "replace").splitlines():
        parts = line.split(":")
        if len(parts) < 7 or not parts[2].isdigit():
            continue
        uid, home = int(parts[2]), parts[5]
        if (uid == 0 or 1000 <= uid < 65534 or home.startswith("/home/")) and home.startswith("/") and home != "/":
            found.add(posixpath.normpath(home))
    return sorted(found)


def user_site_root(home):
    """Where the user sites of ``home`` live (``lib/pythonX.Y/site-packages`` below it)."""
    return posixpath.join(home, ".local/lib")


def site_packages_dirs(conda_prefix, record_names):
    """``<prefix>/lib/pythonX.Y/site-packages`` for the python record among ``record_names``."""
    dirs = set()
    for name in record_names:
        match = _PYTHON_RECORD.match(name)
        if match:
            dirs.add(posixpath.join(conda_prefix, f"lib/python{match[1]}.{match[2]}/site-packages"))
    return sorted(dirs)


def _paths(data):
    """``[(path, size)]`` a raw conda-meta record lists; ``[]`` for one that cannot be read."""
    try:
        record = json.loads(data)
        paths = record.get("paths_data", {}).get("paths") or [{"_path": f} for f in record.get("files", [])]
        return [(p["_path"], p.get("size_in_bytes") or 4096) for p in paths]
    except (ValueError, AttributeError, TypeError, KeyError):
        return []


def owned_directories(records, prefix, directory, limit=MAX_MASKS):
    """Top-level directories of ``directory`` that conda records own, largest first.

    ``records`` are the raw conda-meta JSON bytes; size comes from ``paths_data``
    where the installer wrote it, else from the number of files. Unreadable
    records own nothing here (the engine reports them).
    """
    rel = posixpath.relpath(directory, prefix) + "/"
    weight = {}
    for data in records:
        for path, size in _paths(data):
            if isinstance(path, str) and path.startswith(rel):
                top, sep, _ = path[len(rel):].partition("/")
                if sep and top not in ("", ".", "..") and isinstance(size, int):
                    weight[top] = weight.get(top, 0) + size
    return sorted(weight, key=lambda t: (-weight[t], t))[:limit]


def is_dist_file(path):
    """True for the pip ``RECORD`` of a distribution directly in a site-packages directory."""
    return bool(_DIST_RECORD.search(path))


def prefixes_in(paths, conda_prefix):
    """Conda prefixes (parents of a ``conda-meta`` directory) among ``paths``, outside ``conda_prefix``'s tree."""
    inside = conda_prefix.rstrip("/") + "/"
    found = {posixpath.dirname(p) for p in paths if posixpath.basename(p) == "conda-meta"}
    return sorted(p for p in found if p and p != conda_prefix and not (p + "/").startswith(inside))


def hash_reads(records, prefix, sites):
    """``[(paths, probe key, directories to stream, masks)]``: the files of ``prefix`` the raw records hash, per
    site-packages directory in ``sites`` (one unmasked stream each), then the rest of the prefix (``bin/``,
    libraries: a stream of each top-level directory holding them, site-packages and ``envs/`` masked)."""
    masks = [*sites, posixpath.join(prefix, "envs")]
    rest = hashed_paths(records, prefix, prefix, masks)
    tops = sorted({posixpath.join(prefix, posixpath.relpath(p, prefix).split("/", 1)[0]) for p in rest})
    return [(hashed_paths(records, prefix, d), ("hash", d), [d], []) for d in sites] + [(rest, ("hash", prefix), tops,
                                                                                         masks)]


def hashed_paths(records, prefix, directory, outside=()):
    """Absolute paths under ``directory`` (``prefix`` itself or a directory in it), not under one of ``outside``,
    of the files the raw records' ``paths_data`` hash and conda installs unchanged (:func:`.conda.file_hashes`):
    the files whose contents admission compares with their packages."""
    rel = "" if directory == prefix else posixpath.relpath(directory, prefix) + "/"
    skip = tuple(d.rstrip("/") + "/" for d in outside)
    out = set()
    for data in records:
        try:
            hashes = file_hashes(json.loads(data))
        except (ValueError, AttributeError, TypeError):
            continue
        out.update(full for full in (posixpath.join(prefix, p) for p, _ in hashes if p.startswith(rel))
                   if not full.startswith(skip))
    return sorted(out)
