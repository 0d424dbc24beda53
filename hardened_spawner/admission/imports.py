"""What an image's Pythons can import beyond what its records account for. Pure: no I/O.

Every entry of a site-packages directory is importable (a package or
namespace directory, a module, an extension, a ``.pth`` file that runs at
start-up), so each must be owned: listed in a conda record's ``files``, or in
the pip ``RECORD`` of a distribution that no conda record owns (which
:func:`.conda.pip_pollution` then judges). ``*.dist-info``/``*.egg-info``
are left to that rule and ``__pycache__`` to the sources it caches (Python
never imports a cached file without its source beside it).

Inside a package directory a record owns, every importable file must be one
the owner lists (:func:`nested_unowned`): Python's ``FileFinder`` looks for
``name`` in a package as a directory with ``__init__`` first, then as an
extension module (``name.cpython-311-x86_64-linux-gnu.so``, ``name.abi3.so``,
``name.so``), then ``name.py``, then a sourceless ``name.pyc``, and loads
``__pycache__/name.cpython-XY.pyc`` instead of compiling ``name.py`` when its
header matches (an unchecked-hash pyc always does). So an added
``tornado/web/__init__.py`` or ``tornado/web.abi3.so`` is what ``import
tornado.web`` runs, not the channel-verified ``tornado/web.py``. Environment
variables and ``/etc/ld.so.preload`` that change what Python or the dynamic
loader imports are read from the image's config and files.
"""

import csv
import posixpath
import re

IMPORT_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONPLATLIBDIR",
              "LD_PRELOAD", "LD_AUDIT")
IMPORTABLE = (".py", ".pyc", ".so")  # what every suffix of importlib.machinery.all_suffixes() on Linux ends with
_USER_SITE = re.compile(r"^(?P<site>.+/\.local/lib/python[^/]+/site-packages)/(?P<name>[^/]+)$")


def owned_by_records(records, prefix, directory):
    """Top-level names in ``directory`` that the conda records list files under (or are)."""
    rel = posixpath.relpath(directory, prefix) + "/"
    return {f[len(rel):].split("/", 1)[0] for r in records for f in r.files if f.startswith(rel)}


def record_file_paths(data):
    """Paths a pip ``RECORD`` (CSV, the path first) lists inside its site-packages (normalized, relative)."""
    paths = set()
    for row in csv.reader(data.decode("utf-8", "replace").splitlines()):
        path = posixpath.normpath(row[0]) if row and row[0] else ""
        if path and not path.startswith(("/", "../")) and path != "..":
            paths.add(path)
    return paths


def owned_by_record_file(data):
    """Top-level names a pip ``RECORD`` lists inside its site-packages."""
    return {path.split("/", 1)[0] for path in record_file_paths(data)}


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


def module_of(path):
    """The dotted module a file at ``path`` (relative to site-packages) is imported as: ``tornado/web/__init__.py``,
    ``tornado/web.abi3.so`` and ``tornado/__pycache__/web.cpython-311.pyc`` are all ``tornado.web``."""
    *parents, name = [p for p in path.split("/") if p != "__pycache__"]
    stem = name.split(".", 1)[0]
    return ".".join(parents if stem == "__init__" else [*parents, stem])


def source_of(cached):
    """The source a ``__pycache__`` file caches: ``a/__pycache__/web.cpython-311.pyc`` is ``a/web.py``."""
    parent, name = posixpath.split(cached)
    return posixpath.join(posixpath.dirname(parent), name.split(".", 1)[0] + ".py")


def nested_unowned(records, prefix, directory, entries, files):
    """``[(path, module, owner, shadows)]``: each importable file (a name ending in one of :data:`IMPORTABLE`, or a
    symlink, which can be a package directory) inside a package directory of ``directory`` that a conda record
    owns, or in its top-level ``__pycache__`` for a module a record owns, which neither that record nor a pip
    RECORD (of a distribution no conda record owns) lists. ``owner``: the record's label; ``shadows``: the owner
    provides ``module`` itself, so Python may run the added file instead. ``entries``: ``{absolute path: Entry}``
    of the recursive listing; ``files``: the files read."""
    rel, inside_dir = posixpath.relpath(directory, prefix) + "/", directory + "/"
    owned, owner, provided = set(), {}, {}
    for record in records:
        for f in (f[len(rel):] for f in record.files if f.startswith(rel)):
            owned.add(f)
            if "/" in f:
                owner.setdefault(f.split("/", 1)[0], record.label())
            if f.endswith(IMPORTABLE):
                provided.setdefault(module_of(f), record.label())
    dists = {p[len(inside_dir):].split("/", 1)[0] for p in entries if p.startswith(inside_dir)}
    for dist in (d for d in dists if d.endswith(".dist-info") and d not in owner):
        owned |= record_file_paths(files.get(posixpath.join(directory, dist, "RECORD"), b""))
    out = []
    for path, entry in sorted(entries.items()):
        inside = path[len(inside_dir):] if path.startswith(inside_dir) else ""
        top = inside.split("/", 1)[0]
        if "/" not in inside or inside in owned or not (entry.type == "symlink" or (
                entry.type == "file" and inside.endswith(IMPORTABLE))):
            continue
        module = module_of(inside)
        if top == "__pycache__" and source_of(inside) in owned:
            out.append((path, module, provided[module], True))
        elif top in owner and top != "__pycache__":
            out.append((path, module, owner[top], module in provided))
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
