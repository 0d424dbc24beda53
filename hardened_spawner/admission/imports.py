"""What an image's Pythons can import beyond what its records account for. Pure: no I/O.

Every entry of a site-packages directory is importable (a package or
namespace directory, a module, an extension, a ``.pth`` file that runs at
start-up), so each must be owned: listed in a conda record's ``files``, or in
the pip ``RECORD`` of a distribution that no conda record owns (which
:func:`.conda.pip_pollution` then judges). ``*.dist-info``/``*.egg-info``
are left to that rule and ``__pycache__`` to the sources it caches (Python
never imports a cached file without its source beside it). Environment
variables and ``/etc/ld.so.preload`` that change what Python or the dynamic
loader imports are read from the image's config and files.
"""

import csv
import posixpath
import re

IMPORT_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONPLATLIBDIR",
              "LD_PRELOAD", "LD_AUDIT")
_USER_SITE = re.compile(r"^(?P<site>.+/\.local/lib/python[^/]+/site-packages)/(?P<name>[^/]+)$")


def owned_by_records(records, prefix, directory):
    """Top-level names in ``directory`` that the conda records list files under (or are)."""
    rel = posixpath.relpath(directory, prefix) + "/"
    return {f[len(rel):].split("/", 1)[0] for r in records for f in r.files if f.startswith(rel)}


def owned_by_record_file(data):
    """Top-level names a pip ``RECORD`` (CSV, the path first) lists inside its site-packages."""
    names = set()
    for row in csv.reader(data.decode("utf-8", "replace").splitlines()):
        path = posixpath.normpath(row[0]) if row and row[0] else ""
        if path and not path.startswith(("/", "../")) and path != "..":
            names.add(path.split("/", 1)[0])
    return names


def unowned(records, prefix, listing, files):
    """``[(site-packages directory, name)]`` no conda record or pip RECORD accounts for.

    ``listing``: ``{directory: [names]}``; ``files``: the files read (pip RECORDs among them)."""
    out = []
    for directory, entries in sorted(listing.items()):
        owned = owned_by_records(records, prefix, directory)
        for entry in entries:
            if entry.endswith(".dist-info") and entry not in owned:
                owned |= owned_by_record_file(files.get(posixpath.join(directory, entry, "RECORD"), b""))
        out += [(directory, e) for e in entries if e not in owned and e != "__pycache__"
                and not e.endswith((".dist-info", ".egg-info"))]
    return out


def import_env(env, library_paths):
    """Sentences for each image ENV that changes what Python or the loader imports."""
    allowed = {p.rstrip("/") for p in library_paths}
    out = []
    for item in env or ():
        name, _, value = item.partition("=")
        if not value.strip():
            continue
        if name in IMPORT_ENV:
            out.append(f"{name}={value}")
        elif name == "LD_LIBRARY_PATH":
            extra = [d for d in value.split(":") if d.rstrip("/") not in allowed]
            if extra:
                out.append(f"LD_LIBRARY_PATH names {':'.join(extra)}")
    return out


def preloaded(text):
    """Libraries ``/etc/ld.so.preload`` makes the loader map into every process (comments ignored)."""
    return [word for line in text.splitlines() for word in line.split("#", 1)[0].split()]


def user_sites(entries):
    """``{user site directory: [names]}`` of the non-empty user sites among ``entries`` (absolute paths)."""
    out = {}
    for path in entries:
        match = _USER_SITE.match(path)
        if match:
            out.setdefault(match["site"], []).append(match["name"])
    return {site: sorted(names) for site, names in sorted(out.items())}
