"""conda-meta records in the shapes conda, mamba 1 and micromamba 2 write, through the parser and the rules.

Field shapes, from the installers' documented formats and source:

- conda: the prefix record of the conda environment spec (CEP "conda environments",
  ``PrefixRecord``): ``channel`` a URL (conda writes it with the platform subdir; with the
  libmamba solver the subdir can be the wrong one for noarch packages, conda-libmamba-solver
  #662), ``requested_spec`` a MatchSpec or ``"None"``, newer conda also ``requested_specs``,
  ``package_type`` for noarch, ``paths_data`` with ``sha256``/``sha256_in_prefix``/``size_in_bytes``,
  ``link.type`` 1-4, ``track_features`` a string, ``timestamp`` in ms;
- mamba 1 (libmamba's link step): the package's ``info/index.json`` (``arch``, ``platform``,
  ``subdir``, ``noarch``) plus ``url``/``channel``/``md5`` from repodata, ``build_string`` beside
  ``build``, ``requested_spec: "TODO"``, ``package_tarball_full_path`` ending in ``.tar.bz2``;
- micromamba 2 (libmamba 2's ``PackageInfo`` JSON): ``channel`` as a channel name, ``build_string``,
  ``python_site_packages_path`` on python, ``depends``/``constrains`` always present, no
  ``arch``/``platform``/``features``.

mamba and micromamba write ``paths_data`` as the package's ``info/paths.json`` (``sha256``,
``size_in_bytes``, ``prefix_placeholder``/``file_mode`` where the build marked them) with
``sha256_in_prefix`` added at link time, as conda does.

The rig's images add the records py-rattler (pixi's installer) writes (tests/integration).
"""

import datetime
import json
import posixpath

import pytest

from hardened_spawner.admission import conda, imports, ownership
from hardened_spawner.admission.channels import Listed, Package

ALIAS = "https://conda.anaconda.org"
FORGE = f"{ALIAS}/conda-forge"
SITE = "lib/python3.11/site-packages"
PKGS = "/opt/conda/pkgs"

# name, version, build, subdir, noarch, files
PACKAGES = [
    ("python", "3.11.9", "hb806964_0_cpython", "linux-64", None, ["bin/python3.11", "lib/libpython3.11.so.1.0"]),
    ("numpy", "1.26.4", "py311h64a7726_0", "linux-64", None,
     [f"{SITE}/numpy/__init__.py", f"{SITE}/numpy-1.26.4.dist-info/METADATA"]),
    ("six", "1.16.0", "pyh6c4a22f_0", "noarch", "python", [f"{SITE}/six.py", f"{SITE}/six-1.16.0.dist-info/METADATA"]),
    ("tzdata", "2024a", "h0c530f3_0", "noarch", "generic", ["share/zoneinfo/UTC"]),
]


def build_number(build):
    return int(next(p for p in reversed(build.split("_")) if p.isdigit()))


def paths_data(files, **fields):
    return {"paths": [{"_path": f, "path_type": "hardlink", **fields} for f in files], "paths_version": 1}


def conda_record(name, version, build, subdir, noarch, files, channel_subdir=None):
    fn = f"{name}-{version}-{build}.conda"
    record = {
        "build": build, "build_number": build_number(build), "channel": f"{FORGE}/{channel_subdir or subdir}",
        "constrains": [], "depends": ["python >=3.7"] if noarch == "python" else [],
        "extracted_package_dir": f"{PKGS}/{fn[:-6]}", "features": "", "files": files, "fn": fn, "license": "MIT",
        "link": {"source": f"{PKGS}/{fn[:-6]}", "type": 1}, "md5": "5e5a2ab04e7df8c3d3fb3c0a1f4a7d8e",
        "name": name, "package_tarball_full_path": f"{PKGS}/{fn}",
        "paths_data": paths_data(files, sha256="ab" * 32, sha256_in_prefix="ab" * 32, size_in_bytes=4096),
        "requested_spec": "numpy" if name == "numpy" else "None", "requested_specs": ["numpy"] if name == "numpy" else [],
        "sha256": "cd" * 32, "size": 123456, "subdir": subdir, "timestamp": 1707000000000, "track_features": "",
        "url": f"{FORGE}/{subdir}/{fn}", "version": version,
    }
    if noarch:
        record.update(noarch=noarch, package_type=f"noarch_{noarch}")
    return record


def conda_libmamba_record(name, version, build, subdir, noarch, files):
    """conda with the libmamba solver: every record's channel carries the environment's platform."""
    return conda_record(name, version, build, subdir, noarch, files, channel_subdir="linux-64")


def mamba1_record(name, version, build, subdir, noarch, files):
    fn = f"{name}-{version}-{build}.tar.bz2"
    source = f"{PKGS}/{fn[:-8]}"
    record = {  # info/index.json
        "arch": None if noarch else "x86_64", "build": build, "build_number": build_number(build),
        "depends": [], "license": "MIT", "name": name, "platform": None if noarch else "linux", "subdir": subdir,
        "timestamp": 1707000000000, "version": version,
    }
    if noarch:
        record["noarch"] = noarch
    record.update({  # repodata, then the link step
        "build_string": build, "channel": f"{FORGE}/{subdir}", "constrains": [], "fn": fn,
        "md5": "5e5a2ab04e7df8c3d3fb3c0a1f4a7d8e", "sha256": "cd" * 32, "size": 123456, "track_features": "",
        "url": f"{FORGE}/{subdir}/{fn}", "files": files,
        "paths_data": paths_data(files, sha256="ab" * 32, size_in_bytes=4096), "requested_spec": "TODO",
        "package_tarball_full_path": f"{source}.tar.bz2", "extracted_package_dir": source,
        "link": {"source": source, "type": 1},
    })
    return record


def micromamba2_record(name, version, build, subdir, noarch, files):
    fn = f"{name}-{version}-{build}.conda"
    source = f"{PKGS}/{fn[:-6]}"
    record = {
        "name": name, "version": version, "channel": "conda-forge", "url": f"{FORGE}/{subdir}/{fn}",
        "subdir": subdir, "fn": fn, "size": 123456, "timestamp": 1707000000000, "build": build,
        "build_string": build, "build_number": build_number(build), "license": "MIT",
        "track_features": "", "md5": "5e5a2ab04e7df8c3d3fb3c0a1f4a7d8e", "sha256": "cd" * 32,
        "depends": [], "constrains": [], "files": files,
        "paths_data": paths_data(files, sha256="ab" * 32, sha256_in_prefix="ab" * 32, size_in_bytes=4096),
        "requested_spec": "", "package_tarball_full_path": f"{PKGS}/{fn}", "extracted_package_dir": source,
        "link": {"source": source, "type": 1},
    }
    if noarch:
        record["noarch"] = noarch
    if name == "python":
        record["python_site_packages_path"] = SITE
    return record


INSTALLERS = {"conda": conda_record, "conda-libmamba": conda_libmamba_record, "mamba-1": mamba1_record,
              "micromamba-2": micromamba2_record}


def environment(make, packages=PACKAGES, **edits):
    raw = {}
    for package in packages:
        record = make(*package)
        record.update(edits.get(record["name"], {}))
        raw[f"{record['name']}-{record['version']}-{record['build']}.json"] = json.dumps(record, indent=2).encode()
    return conda.parse_records(raw)


@pytest.mark.parametrize("installer", INSTALLERS)
def test_records_parse_with_rattler_and_keep_their_files(installer):
    records, problems = environment(INSTALLERS[installer])
    assert problems == []
    assert {r.name: (r.version, r.build, r.subdir) for r in records} == {
        name: (version, build, subdir) for name, version, build, subdir, _, _ in PACKAGES}
    assert all(type(r.matchable).__name__ == "PrefixRecord" for r in records)  # none needed the raw fallback
    assert {r.name: r.files for r in records}["six"] == (f"{SITE}/six.py", f"{SITE}/six-1.16.0.dist-info/METADATA")
    assert {r.name: r.md5 for r in records}["numpy"] == "5e5a2ab04e7df8c3d3fb3c0a1f4a7d8e"


@pytest.mark.parametrize("installer", INSTALLERS)
def test_every_shape_is_on_the_conda_forge_channel(installer):
    records, _ = environment(INSTALLERS[installer])
    allowed = conda.allowed_set(["conda-forge"], ALIAS)
    assert conda.disallowed_channels(records, allowed, ALIAS, ()) == []
    assert {conda.channel_of(r, ALIAS, ()) for r in records} == {"conda.anaconda.org/conda-forge"}
    assert conda.disallowed_channels(records, conda.allowed_set(["defaults"], ALIAS), ALIAS, ()) == [
        f"{r.label()} comes from conda.anaconda.org/conda-forge" for r in records]


@pytest.mark.parametrize("installer", INSTALLERS)
def test_a_private_mirror_maps_to_the_channel_it_mirrors(installer):
    mirror = "https://conda.internal.example/artifactory/api/conda/conda-forge-remote"
    edits = {"numpy": {"url": f"{mirror}/linux-64/numpy-1.26.4-py311h64a7726_0.conda",
                       "channel": "conda-forge-remote" if installer == "micromamba-2" else f"{mirror}/linux-64"}}
    records, _ = environment(INSTALLERS[installer], **edits)
    allowed = conda.allowed_set(["conda-forge"], ALIAS)
    (unmapped,) = conda.disallowed_channels(records, allowed, ALIAS, ())
    assert unmapped.startswith("numpy 1.26.4") and "conda.internal.example/artifactory" in unmapped
    mirrors = conda.normalize_mirrors([(mirror, "conda-forge")], ALIAS)
    assert conda.disallowed_channels(records, allowed, ALIAS, mirrors) == []


@pytest.mark.parametrize("installer", INSTALLERS)
def test_python_eol_denied_specs_and_pip_pollution_on_each_shape(installer):
    make = INSTALLERS[installer]
    old = [("python", "3.9.18", "h0755675_1_cpython", "linux-64", None, ["bin/python3.9"]),
           ("pycrypto", "2.6.1", "py39hb9d737c_6", "linux-64", None, ["lib/python3.9/site-packages/Crypto/__init__.py"])]
    records, problems = environment(make, old + PACKAGES[2:])
    assert problems == []
    kind, message = conda.python_eol(records, datetime.date(2026, 1, 1), 90)
    assert kind == "eol" and "Python 3.9.18" in message
    assert conda.denied(records, ["pycrypto"], ALIAS, ()) == ["pycrypto 2.6.1 (py39hb9d737c_6) matches the denied spec 'pycrypto'"]
    assert conda.denied(records, ["conda-forge::pycrypto"], ALIAS, ()) != []
    assert conda.denied(records, ["defaults::pycrypto"], ALIAS, ()) == []
    records, _ = environment(make)
    listing = {f"/opt/conda/{SITE}": ["numpy", "numpy-1.26.4.dist-info", "six.py", "six-1.16.0.dist-info",
                                      "requests-2.32.3.dist-info"]}
    assert conda.pip_pollution(records, "/opt/conda", listing, ()) == ["requests-2.32.3.dist-info"]


@pytest.mark.parametrize("installer", INSTALLERS)
def test_each_shape_gives_the_hashes_of_the_files_installed_unchanged(installer):
    rewritten = {"_path": "bin/python3.11", "path_type": "hardlink", "sha256": "ee" * 32, "sha256_in_prefix": "ff" * 32,
                 "prefix_placeholder": "/home/conda/feedstock_root/build_artifacts/placeholder", "file_mode": "binary"}
    link = {"_path": "bin/python", "path_type": "softlink", "sha256": "ee" * 32}
    python = {"paths_data": {"paths": [rewritten, link, {"_path": "lib/libpython3.11.so.1.0", "path_type": "hardlink",
                                                         "sha256": "12" * 32}], "paths_version": 1}}
    records, _ = environment(INSTALLERS[installer], python=python)
    hashes = {r.name: r.hashes for r in records}
    assert hashes["python"] == (("lib/libpython3.11.so.1.0", "12" * 32),)  # conda rewrote one, the other is a link
    assert hashes["six"] == ((f"{SITE}/six.py", "ab" * 32), (f"{SITE}/six-1.16.0.dist-info/METADATA", "ab" * 32))
    actual = {f"/opt/conda/{SITE}/six.py": "ab" * 32, f"/opt/conda/{SITE}/numpy/__init__.py": "00" * 32}
    assert conda.modified_files(records, "/opt/conda", actual) == [
        f"/opt/conda/{SITE}/numpy/__init__.py of numpy 1.26.4 (py311h64a7726_0) was changed after install"]


@pytest.mark.parametrize("installer", INSTALLERS)
def test_each_shape_is_checked_against_the_repodata_of_its_channel(installer):
    make = INSTALLERS[installer]
    records, _ = environment(make)
    channel = "conda.anaconda.org/conda-forge"
    listed = {(channel, r.subdir, posixpath.basename(r.url)): Listed("cd" * 32, "5e5a2ab04e7df8c3d3fb3c0a1f4a7d8e", 123456)
              for r in records}
    assert {k[2].rsplit(".", 2)[-1] for k in listed} == {"bz2" if installer == "mamba-1" else "conda"}
    assert conda.not_from_channel(records, listed, {channel}, ALIAS, ()) == []
    assert conda.not_from_channel(records, listed, {"conda.anaconda.org/other"}, ALIAS, ()) == []  # not verified
    forged = {"six": {"sha256": "ff" * 32}, "numpy": {"md5": "0" * 32}, "tzdata": {"size": 1}, "python": {"sha256": ""}}
    records, _ = environment(make, **forged)
    numpy, python, six, tzdata = sorted(conda.not_from_channel(records, listed, {channel}, ALIAS, ()))
    assert six.startswith("six 1.16.0 (pyh6c4a22f_0): sha256 ffffffffffffffff... is not the cdcdcdcdcdcdcdcd...")
    assert numpy.startswith("numpy 1.26.4 (py311h64a7726_0): md5 00000000000000000000000000000000 is not the 5e5a")
    assert tzdata.startswith("tzdata 2024a (h0c530f3_0): size 1 is not the 123456")
    assert python.startswith("python 3.11.9 (hb806964_0_cpython) has no sha256")
    elsewhere = {"six": {"url": f"{FORGE}/noarch/six-1.16.0-pyh6c4a22f_1.conda"}}  # a file the channel does not list
    records, _ = environment(make, **elsewhere)
    assert conda.not_from_channel(records, listed, {channel}, ALIAS, ()) == [
        f"six 1.16.0 (pyh6c4a22f_0): {channel} lists no noarch/six-1.16.0-pyh6c4a22f_1.conda"]


@pytest.mark.parametrize("installer", INSTALLERS)
def test_the_readers_find_the_hashed_files_and_owned_directories_in_each_shape(installer):
    from hardened_spawner.admission import prefixes
    raw = [json.dumps(INSTALLERS[installer](*package)).encode() for package in PACKAGES]
    site = f"/opt/conda/{SITE}"
    assert prefixes.hashed_paths(raw, "/opt/conda", site) == [  # every file hashed, not only Python sources
        f"{site}/numpy-1.26.4.dist-info/METADATA", f"{site}/numpy/__init__.py", f"{site}/six-1.16.0.dist-info/METADATA",
        f"{site}/six.py"]
    assert prefixes.hashed_paths(raw, "/opt/conda", "/opt/conda", [site]) == [  # the rest of the prefix
        "/opt/conda/bin/python3.11", "/opt/conda/lib/libpython3.11.so.1.0", "/opt/conda/share/zoneinfo/UTC"]
    assert prefixes.owned_directories(raw, "/opt/conda", site) == ["numpy", "numpy-1.26.4.dist-info", "six-1.16.0.dist-info"]
    assert prefixes.site_packages_dirs("/opt/conda", [f"{p[0]}-{p[1]}-{p[2]}.json" for p in PACKAGES]) == [site]


@pytest.mark.parametrize("installer", INSTALLERS)
def test_the_packages_own_file_list_wins_over_an_edited_record(installer):
    """Each shape's records against the files their packages' info/paths.json hash (noarch python ones under
    site-packages/, installed into the environment's site-packages)."""
    edited = {"six": {"paths_data": paths_data([f"{SITE}/six.py"], sha256="ff" * 32)},   # the patched file's hash
              "numpy": {"paths_data": paths_data([f"{SITE}/numpy-1.26.4.dist-info/METADATA"], sha256="ab" * 32)}}
    records, _ = environment(INSTALLERS[installer], **edited)
    source = {r.name: r.source for r in records}
    packages = {source["six"]: ((ownership.installed("site-packages/six.py", SITE), "ab" * 32),),
                source["numpy"]: ((ownership.installed(f"{SITE}/numpy/__init__.py", SITE), "ab" * 32),)}
    site = f"/opt/conda/{SITE}"
    actual = {f"{site}/six.py": "ff" * 32}
    assert conda.modified_files(records, "/opt/conda", actual) == []  # the records agree with the files
    assert sorted(conda.modified_files(records, "/opt/conda", actual, packages, (site,))) == [
        f"{site}/numpy/__init__.py of numpy 1.26.4 (py311h64a7726_0) is hashed by its package but not by its record",
        f"{site}/six.py of six 1.16.0 (pyh6c4a22f_0) was changed after install"]


@pytest.mark.parametrize("installer", INSTALLERS)
def test_a_name_added_to_a_records_files_owns_nothing_its_package_does_not_install(installer):
    """A record of a verified channel whose repodata lists it owns what its package's info/paths.json installs
    (noarch python's site-packages/ mapped into the environment's), not what its edited ``files`` claims."""
    claimed = {"six": {"files": [f"{SITE}/six.py", f"{SITE}/six-1.16.0.dist-info/METADATA", f"{SITE}/Crypto/__init__.py",
                                 f"{SITE}/requests-2.32.3.dist-info/METADATA"]}}
    records, _ = environment(INSTALLERS[installer], **claimed)
    channel, site = "conda.anaconda.org/conda-forge", f"/opt/conda/{SITE}"
    listed = {(channel, r.subdir, posixpath.basename(r.url)): Listed("cd" * 32, "5e5a2ab04e7df8c3d3fb3c0a1f4a7d8e", 123456)
              for r in records}
    packages = {(channel, r.subdir, posixpath.basename(r.url)): Package(tuple(
        "site-packages/" + f[len(SITE) + 1:] if r.name == "six" else f for f in r.files if f not in claimed["six"]["files"][2:]), ())
        for r in records}
    listing = {site: ["Crypto", "numpy", "numpy-1.26.4.dist-info", "requests-2.32.3.dist-info", "six-1.16.0.dist-info",
                      "six.py"]}
    assert imports.unowned(records, "/opt/conda", listing, {}) == []  # the claim hides Crypto
    assert conda.pip_pollution(records, "/opt/conda", listing, ()) == []  # and the pip-installed requests
    owned = ownership.owners(records, packages, listed, {channel}, ALIAS, (), SITE)
    assert imports.unowned(owned, "/opt/conda", listing, {}) == [(site, "Crypto")]
    assert conda.pip_pollution(owned, "/opt/conda", listing, ()) == ["requests-2.32.3.dist-info"]
    assert [r.files for r in owned if r.name == "numpy"] == [r.files for r in records if r.name == "numpy"]
    # the claim stands where the channel does not vouch for the record: not verified, not listed, no package read
    for args in ((packages, listed, set()), (packages, {}, {channel}), ({}, listed, {channel})):
        assert imports.unowned(ownership.owners(records, *args, ALIAS, (), SITE), "/opt/conda", listing, {}) == []
