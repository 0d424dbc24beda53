"""List directories of an image straight from its overlay2 layers, when the hub can read them.

Docker's API has no directory listing: the archive endpoint sends whole trees
(275 MB for a JupyterLab site-packages, over a second of daemon time). When the
hub runs on the Docker host with access to the daemon's data root, the
listings admission needs (site-packages names, modes in the binary
directories) are read from the layer directories that ``docker image
inspect`` reports (``GraphDriver``), following overlayfs: upper layers first,
whiteouts (character devices 0/0) delete names below, opaque directories
(``trusted.overlay.opaque=y``) hide everything below. Whenever the layers
cannot answer exactly (another storage driver, unreadable paths, a symlink on
the way), :func:`listing` returns None and the caller reads the archive.

The same layers give a container's changes (:func:`container_changes`, the
conda drift audit at stop) by walking only its upper directory.
"""

import hashlib
import os
import posixpath
import stat

OPAQUE = "trusted.overlay.opaque"
MAX_ENTRIES = 200_000


def overlay_layers(image_info):
    """The image's layer directories, top first, or None if they cannot be read here."""
    driver = image_info.get("GraphDriver") or {}
    if driver.get("Name") != "overlay2":
        return None
    data = driver.get("Data") or {}
    layers = [data["UpperDir"]] if data.get("UpperDir") else []
    layers += [d for d in (data.get("LowerDir") or "").split(":") if d]
    if not layers or not all(os.path.isdir(d) and os.access(d, os.R_OK | os.X_OK) for d in layers):
        return None
    return layers if trusted_xattrs_readable() else None


CAP_SYS_ADMIN = 21


def trusted_xattrs_readable(status="/proc/self/status"):
    """True when this process holds CAP_SYS_ADMIN, without which opaque directories cannot be seen.

    Without it the kernel hides ``trusted.*`` attributes: reading one answers
    ENODATA, exactly as for a directory that is not opaque, so trying proves
    nothing (the earlier probe took that ENODATA for a yes).
    """
    try:
        with open(status) as f:
            caps = next(line for line in f if line.startswith("CapEff:")).split()[1]
    except (OSError, StopIteration, IndexError):
        return False
    return bool(int(caps, 16) >> CAP_SYS_ADMIN & 1)


class _Unanswerable(Exception):
    """The layers alone cannot say what the merged directory holds."""


def _opaque(path):
    try:
        return os.getxattr(path, OPAQUE) == b"y"
    except OSError:
        return False


def _is_whiteout(st):
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _list(layers, parts):
    """``{name: (layer path, stat)}`` of the merged directory ``parts`` (None if absent)."""
    found, hidden, exists = {}, set(), False
    for layer in layers:
        current, reachable, stop = layer, True, False
        for part in parts:
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                reachable = False
                break
            if _is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
                if stat.S_ISLNK(st.st_mode) and not exists:
                    raise _Unanswerable(current)  # a symlink in the merged view: let Docker resolve it
                return found if exists else None  # deleted or replaced here: nothing below counts
            if _opaque(current):
                stop = True
        if reachable:
            exists = True
            for entry in os.scandir(current):
                st = entry.stat(follow_symlinks=False)
                if entry.name in found or entry.name in hidden:
                    continue
                if _is_whiteout(st):
                    hidden.add(entry.name)
                else:
                    found[entry.name] = (entry.path, st)
                if len(found) > MAX_ENTRIES:
                    raise _Unanswerable(current)
        if stop:
            break
    return found if exists else None


def _entry(path, st):
    kind = ("dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode)
            else "file" if stat.S_ISREG(st.st_mode) else "other")
    return (stat.S_IMODE(st.st_mode), kind, st.st_size if kind == "file" else 0,
            os.readlink(path) if kind == "symlink" else "")


def listing(layers, path, recursive=False):
    """``{absolute path: (mode, type, size, linkname)}`` under ``path`` (the directory itself
    included), ``{}`` if it does not exist, or None when the layers cannot answer."""
    parts = [p for p in path.split("/") if p]
    try:
        top = _list(layers, parts)
        if top is None:
            return {}
        out = {posixpath.join("/", *parts): (0o755, "dir", 0, "")}
        pending = [(parts, top)]
        while pending:
            base, names = pending.pop()
            for name, (real, st) in names.items():
                here = posixpath.join("/", *base, name)
                out[here] = _entry(real, st)
                if recursive and stat.S_ISDIR(st.st_mode):
                    below = _list(layers, base + [name])
                    if below:
                        pending.append((base + [name], below))
                if len(out) > MAX_ENTRIES:
                    raise _Unanswerable(path)
        return out
    except (_Unanswerable, OSError):
        return None


def changes(layers, path):
    """``docker diff`` entries (``{"Path", "Kind"}``: 0 changed, 1 added, 2 deleted) under ``path``
    in the top layer (a container's upper directory) against the layers below it, or None when
    the layers cannot answer.

    Only the top layer is walked, so the cost is what changed, not the image: Docker's own diff
    walks every file of a large image where it cannot use overlayfs' native diff (seconds at
    every stop). A directory deleted and made again (opaque) is compared name by name with the
    one it hides, as Docker's diff does: what is gone is deleted, what is new is added.
    """
    top, below = layers[0], layers[1:]
    parts = [p for p in path.split("/") if p]
    known = {}  # parent parts -> names in the merged view of the lower layers (None: absent)

    def lower_names(parent):
        key = tuple(parent)
        if key not in known:
            known[key] = _list(below, list(parent)) if below else None
        return known[key] or {}

    out = []

    def add(rel, kind):
        out.append({"Path": posixpath.join("/", *rel), "Kind": kind})
        if len(out) > MAX_ENTRIES:
            raise _Unanswerable(path)

    def walk(rel, real, replaced):
        """``replaced``: this directory hides the one below (opaque here or above)."""
        entries = list(os.scandir(real))
        if replaced:
            present = {e.name for e in entries}
            for name in sorted(set(lower_names(rel)) - present):
                add(rel + [name], 2)
        for entry in entries:
            here = rel + [entry.name]
            st = entry.stat(follow_symlinks=False)
            if _is_whiteout(st):
                add(here, 2)
                continue
            add(here, 0 if entry.name in lower_names(rel) else 1)
            if stat.S_ISDIR(st.st_mode):
                walk(here, entry.path, replaced or _opaque(entry.path))

    try:
        current = top
        for i, part in enumerate(parts):  # the path itself: only changed if the top layer has it
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                return []
            if _is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
                add(parts[:i + 1], 2 if _is_whiteout(st) else 0 if part in lower_names(parts[:i]) else 1)
                return out
            if _opaque(current):
                raise _Unanswerable(current)  # a replaced ancestor: leave it to Docker
        walk(parts, current, False)
        return out
    except (_Unanswerable, OSError):
        return None


def container_changes(container_info, path):
    """:func:`changes` under ``path`` for a container (``docker inspect`` of it), or None when its
    layers cannot be read here."""
    found = overlay_layers(container_info)
    return changes(found, path) if found else None


def find_dirs(layers, name, prune=()):
    """Absolute paths of every directory called ``name`` in any of the layers (not below one),
    leaving out the trees at ``prune``, or None when the layers cannot be walked.

    A name found in a lower layer may be deleted above it: read each through :func:`listing`."""
    pruned = {tuple(p for p in path.split("/") if p) for path in prune}
    found = set()
    try:
        for layer in layers:
            pending = [((), layer)]
            while pending:
                rel, real = pending.pop()
                with os.scandir(real) as entries:
                    for entry in entries:
                        if not entry.is_dir(follow_symlinks=False):
                            continue
                        here = rel + (entry.name,)
                        if entry.name == name:
                            found.add("/" + "/".join(here))
                        elif here not in pruned:
                            pending.append((here, entry.path))
                if len(found) > MAX_ENTRIES:
                    return None
    except OSError:
        return None
    return sorted(found)


def read_files(layers, paths, limit):
    """``{path: data}`` of the regular files at ``paths`` (None: absent, not a regular file or larger than
    ``limit``); a path the layers cannot answer (a symlink on the way) is left out, for Docker to read."""
    out = {}
    for path in paths:
        parts = [p for p in path.split("/") if p]
        try:
            names = _list(layers, parts[:-1])
            real, st = (names or {}).get(parts[-1], (None, None))
            if st is not None and stat.S_ISLNK(st.st_mode):
                continue
            if st is None or not stat.S_ISREG(st.st_mode) or st.st_size > limit:
                out[path] = None
                continue
            with open(real, "rb") as f:
                out[path] = f.read(limit + 1)[:limit]
        except (_Unanswerable, OSError):
            continue
    return out


def hash_files(layers, paths):
    """``{path: sha256 hex}`` of the regular files at ``paths`` in the merged view (None: absent or not a
    regular file), listing each parent directory once; a path the layers cannot answer is left out."""
    out, parents = {}, {}
    for path in paths:
        parent, name = posixpath.split(path)
        try:
            if parent not in parents:
                parents[parent] = _list(layers, [p for p in parent.split("/") if p]) or {}
            real, st = parents[parent].get(name, (None, None))
            if st is not None and stat.S_ISLNK(st.st_mode):
                continue
            if st is None or not stat.S_ISREG(st.st_mode):
                out[path] = None
                continue
            with open(real, "rb") as f:
                out[path] = hashlib.file_digest(f, "sha256").hexdigest()
        except (_Unanswerable, OSError):
            continue
    return out
