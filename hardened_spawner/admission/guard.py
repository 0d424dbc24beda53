"""The runtime conda guard: policy files for containers and drift reports. Pure: no I/O.

``/etc/conda/.condarc`` is the first file in conda's search path, and its keys
are marked ``#!final`` so a user's ``~/.condarc`` or an environment's condarc
cannot override them; ``allowlist_channels`` makes conda refuse other
channels. pip has no such lock: ``/etc/pip.conf`` and ``<prefix>/pip.conf``
set the index for every environment, and a user can still pass
``--index-url``: pip's index is a default, egress rules are the enforcement.
Files are root-owned and 0644, and the container user has no capabilities,
so they cannot be changed from inside.
"""

import io
import json
import posixpath
import tarfile

from . import conda

MAX_PATHS = 50


def _yaml_list(key, values):
    return [f"{key}:  #!final"] + [f"  - {json.dumps(v)}" for v in values]


def condarc(policy):
    """The system .condarc for ``policy``, or None when no channels are configured."""
    if not policy.allowed_channels:
        return None
    mirrors = conda.normalize_mirrors(policy.channel_mirrors, policy.channel_alias)
    allowed = conda.allowed_set(policy.allowed_channels, policy.channel_alias, mirrors)
    allowlist = list(policy.allowed_channels) + [
        m for m, target in policy.channel_mirrors
        if conda.normalize_channel(target, policy.channel_alias, mirrors) in allowed
    ]
    lines = ["# Written by hardened_spawner at spawn: this hub's conda channel policy.",
             f"channel_alias: {json.dumps(policy.channel_alias)}  #!final"]
    lines += _yaml_list("channels", policy.allowed_channels)
    lines += _yaml_list("allowlist_channels", allowlist)
    return "\n".join(lines) + "\n"


def pip_conf(index_url, extra_index_urls):
    if not index_url and not extra_index_urls:
        return None
    lines = ["# Written by hardened_spawner at spawn: this hub's pip index policy.", "[global]"]
    if index_url:
        lines.append(f"index-url = {index_url}")
    if extra_index_urls:
        lines.append("extra-index-url = " + " ".join(extra_index_urls))
    return "\n".join(lines) + "\n"


def policy_files(policy, index_url, extra_index_urls):
    """``{path relative to /: text}`` of the files to put into a container."""
    files = {}
    rc = condarc(policy)
    if rc:
        files["etc/conda/.condarc"] = rc
    pip = pip_conf(index_url, extra_index_urls)
    if pip:
        files["etc/pip.conf"] = pip
        if policy.conda_prefix:
            files[posixpath.join(policy.conda_prefix.strip("/"), "pip.conf")] = pip
    return files


def archive(files):
    """A tar of ``files`` for ``put_archive(container, "/")``: root-owned, 0644, with /etc/conda."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if any(p.startswith("etc/conda/") for p in files):
            info = tarfile.TarInfo("etc/conda")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def drift(changes, prefix, delivered=()):
    """Summary of ``docker diff`` entries under ``prefix``: counts and the first paths.

    Directories that show as changed only because something inside them
    changed, and the files the guard delivered, are not drift.
    """
    kinds = {0: "changed", 1: "added", 2: "deleted"}
    root = prefix.rstrip("/")
    ignored = {"/" + p.lstrip("/") for p in delivered}
    parents = {posixpath.dirname(c.get("Path", "")) for c in changes}
    parents |= {posixpath.dirname(p) for p in parents}
    counts = {"added": 0, "changed": 0, "deleted": 0}
    paths = []
    for change in changes:
        path = change.get("Path", "")
        if not path.startswith(root + "/") or path in ignored:
            continue
        if change.get("Kind") == 0 and any(p == path or p.startswith(path + "/") for p in parents):
            continue
        kind = kinds.get(change.get("Kind"), "changed")
        counts[kind] += 1
        if len(paths) < MAX_PATHS:
            paths.append(f"{kind} {path}")
    return {"total": sum(counts.values()), **counts, "paths": paths}
