"""Python import rules: everything a Python in the image can import is accounted for. Pure: no I/O.

The conda rules judge records; these make sure nothing importable escapes
them: files in an environment's site-packages that no record owns, the
image's ENV that points Python or the loader elsewhere, and user sites
baked into the image's home directories.
"""

import posixpath

from .. import channels, conda, imports, ownership
from .base import Family, listing

FAMILY = Family("python", "Python import rules", "admission-conda.md", needs=("image", "site-packages"))
rule = FAMILY.rule


def owners(s):
    """``{prefix: records}``: each environment's records, owning what their packages install where the
    channel vouches for them (:func:`.ownership.owners`), else what their ``files`` claim."""
    policy, context = s.policy, s.context
    mirrors = conda.normalize_mirrors(policy.channel_mirrors, policy.channel_alias)
    verified = channels.verified(policy)
    return {env.prefix: ownership.owners(env.records, context.package_files, context.repodata, verified,
                                         policy.channel_alias, mirrors, ownership.site_rel(env))
            for env in s.inputs.envs if env.records is not None}


def _unowned(s):
    """``[(kind, sentence)]``: kind ``pth`` or ``module``, one sentence per environment and kind; both kinds
    when the packages' file lists cannot be read (a repodata that cannot be read is conda.not-from-channel's)."""
    packages = s.context.package_files
    if isinstance(packages, channels.RepodataError) and packages is not s.context.repodata:
        why = f"What the records own cannot be read from their packages: {packages}."
        return [("pth", why), ("module", why)]
    claim = "" if s.policy.verify_channels else (
        " (What a record owns is its `files` list, which the image wrote: conda_verify_channels takes it from "
        "the packages.)")
    out, owned = [], s.once(owners)
    for env in s.inputs.envs:
        if env.records is None:
            continue
        where = f" of {env.label()}" if env.name else ""
        found = imports.unowned(owned[env.prefix], env.prefix, env.site_packages, s.facts.files)
        for kind, names in (("pth", [posixpath.join(d, n) for d, n in found if n.endswith(".pth")]),
                            ("module", [posixpath.join(d, n) for d, n in found if not n.endswith(".pth")])):
            if names:
                out.append((kind, f"site-packages{where} holds {listing(names)}, which no conda record "
                                  f"or pip RECORD owns.{claim}"))
        nested = [_nested(*hit) for d in sorted(env.site_packages)
                  for hit in imports.nested_unowned(owned[env.prefix], env.prefix, d, s.facts.under(d), s.facts.files)]
        if nested:
            out.append(("module", f"site-packages{where} holds, inside package directories conda records own, "
                                  f"{listing(nested)}, which neither that package nor a pip RECORD lists.{claim}"))
    return out


def _nested(path, module, owner, shadows):
    what = f"not the {module} that {owner} installs" if shadows else f"inside the package of {owner}"
    return f"{path} (`import {module}` runs it, {what})"


@rule("python.unowned-module", "high", "enforce", "importable files no package record owns",
      "Install the code as a conda package (or with pip, so its RECORD lists it), or remove it; a file added "
      "inside a conda package's directory: remove it (reinstall the package) or build it into a package of its own.",
      protects="a module or package directory copied into site-packages without a record (a denied "
               "`Crypto/` dropped in as files): `import` finds it, but no conda rule can see it; with "
               "`conda_verify_channels`, what a record owns is what its package installs (its `info/paths.json` on "
               "the channel), so a name added to the record's `files` does not help; and inside a package a record owns, an "
               "added module, extension (`tornado/web.abi3.so`), package directory (`tornado/web/__init__.py`) or "
               "`__pycache__/*.pyc` that Python imports instead of the package's own `tornado/web.py`",
      needs=("image", "site-packages", "context"))
def unowned_module(s):
    yield from (text for kind, text in s.once(_unowned) if kind == "module")


@rule("python.unowned-pth", "high", "enforce", "a .pth file no package record owns",
      "Remove the .pth file, or install the package that ships it.",
      protects="a `.pth` file no record owns: Python runs its `import` lines at every start-up, in every "
               "interpreter of the environment",
      needs=("image", "site-packages", "context"))
def unowned_pth(s):
    yield from (text + " Python runs it at every start-up." for kind, text in s.once(_unowned) if kind == "pth")


@rule("python.import-env", "high", "enforce", "image ENV changes what Python or the loader imports",
      "Remove the variable from the image's ENV (or list the directory in admission_library_paths); "
      "install the code into the environment instead.",
      protects="`PYTHONPATH`/`PYTHONHOME`/`PYTHONSTARTUP`/`PYTHONUSERBASE`/`PYTHONPLATLIBDIR` pointing Python at "
               "files no record owns (a `tornado/` that shadows the locked one), `LD_PRELOAD`/`LD_AUDIT`, an "
               "`LD_LIBRARY_PATH` outside `admission_library_paths`, and a non-empty `/etc/ld.so.preload`",
      needs=("image",))
def import_env(s):
    found = imports.import_env(s.config.get("Env"), s.policy.library_paths)
    if found:
        yield f"The image's ENV sets {listing(found)}."
    preload = imports.preloaded(s.facts.files.get("/etc/ld.so.preload", b"").decode("utf-8", "replace"))
    if preload:
        yield f"/etc/ld.so.preload makes every process load {listing(preload)}."


@rule("python.user-site", "high", "enforce", "a user site-packages baked into the image",
      "Remove ~/.local/lib/python*/site-packages from the image; install into the conda environment.",
      protects="`~/.local/lib/pythonX.Y/site-packages` in a home directory of the image: a real CPython imports "
               "it before its own site-packages, and Docker copies it into a new home volume")
def user_site(s):
    for site, names in imports.user_sites(s.facts.entries).items():
        yield f"{site} holds {listing(names)}."
