"""Which files each conda record owns, and where to read that from. Pure: no I/O.

A record's ``files`` is text the image builder wrote: adding a name to it makes
an unrecorded module look owned (``python.unowned-module``) or a pip-installed
distribution look like conda's (``conda.pip-pollution``). For a record that a
``conda_verify_channels`` channel's repodata lists with the record's hashes, the
files come from the package itself, its ``info/paths.json`` on that channel
(:func:`.channels.load_package_files`); for every other record they rest on its
claim.
"""

import dataclasses
import posixpath
import urllib.parse

from . import conda


def package_of(record, packages, alias, mirrors):
    """The :class:`.channels.Package` read from the channel for ``record``, or None."""
    if not isinstance(packages, dict):
        return None
    name = posixpath.basename(urllib.parse.urlsplit(record.url).path)
    return packages.get((conda.channel_of(record, alias, mirrors), record.subdir or "noarch", name))


def installed(path, site_packages):
    """Where ``path`` of a package's ``info/paths.json`` lands in the prefix: a noarch python package's
    ``site-packages/`` is installed into ``site_packages`` (relative to the prefix), its ``python-scripts/``
    into ``bin/``."""
    if site_packages and path.startswith("site-packages/"):
        return site_packages + path[len("site-packages"):]
    if path.startswith("python-scripts/"):
        return "bin" + path[len("python-scripts"):]
    return path


def site_rel(env):
    """The environment's first site-packages directory, relative to its prefix ("" when it has none)."""
    sites = sorted(env.site_packages)
    return posixpath.relpath(sites[0], env.prefix) if sites else ""


def owners(records, packages, listed, verified, alias, mirrors, site_packages):
    """``records``, each whose channel (one of ``verified``) lists it in ``listed`` (its repodata, as
    :func:`.conda.channel_check` reads it) and serves its package in ``packages`` with ``files`` replaced by
    what that package installs."""
    out = []
    for record in records:
        package = package_of(record, packages, alias, mirrors)
        if package is not None and conda.channel_check(record, listed, verified, alias, mirrors) == "listed":
            record = dataclasses.replace(record, files=tuple(installed(p, site_packages) for p in package.paths))
        out.append(record)
    return out
