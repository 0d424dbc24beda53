"""Conda records, channels, Python end of life, specs, pip pollution and lock files."""

import datetime
import json

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from hardened_spawner.admission import conda, locks, python_eol

FORGE = "https://conda.anaconda.org/conda-forge"


def raw_record(name, version, build="pyhd8ed1ab_0", subdir="noarch", channel=FORGE, files=(), **extra):
    fn = f"{name}-{version}-{build}.conda"
    rec = {"arch": None, "build": build, "build_number": 0, "channel": f"{channel}/{subdir}", "constrains": [],
           "depends": [], "features": "", "files": list(files), "fn": fn, "license": "MIT",
           "link": {"source": f"/opt/conda/pkgs/{fn[:-6]}", "type": 1}, "md5": "0123456789abcdef0123456789abcdef",
           "name": name, "paths_data": {"paths": [], "paths_version": 1}, "requested_spec": "",
           "sha256": "ab" * 32, "size": 1, "subdir": subdir, "timestamp": 1700000000000, "track_features": "",
           "url": f"{channel}/{subdir}/{fn}", "version": version}
    rec.update(extra)
    return rec


def records(*recs):
    parsed, problems = conda.parse_records({f"{r['name']}-{r['version']}-{r['build']}.json": json.dumps(r).encode()
                                            for r in recs})
    assert problems == []
    return parsed


def test_records_with_conda_field_set_parse_with_rattler():
    (rec,) = records(raw_record("python", "3.11.2", "hab00c5b_0_cpython", "linux-64", files=["bin/python3.11"]))
    assert (rec.name, rec.version, rec.build, rec.subdir) == ("python", "3.11.2", "hab00c5b_0_cpython", "linux-64")
    assert rec.files == ("bin/python3.11",) and rec.md5 == "0123456789abcdef0123456789abcdef"
    assert type(rec.matchable).__name__ == "PrefixRecord"


def test_rattler_rejects_a_record_without_url_and_the_raw_fallback_reads_it():
    rec = raw_record("numpy", "1.26.4", "py311h64a7726_0", "linux-64")
    del rec["url"]
    (parsed,), problems = conda.parse_records({"numpy.json": json.dumps(rec).encode()})
    assert problems == [] and parsed.name == "numpy" and type(parsed.matchable).__name__ == "PackageRecord"
    assert parsed.channel_source == f"{FORGE}/linux-64"


@pytest.mark.parametrize("data, message", [
    (b"{not json", "not JSON"),
    (json.dumps({"name": "x", "build": "0"}).encode(), "missing version"),
    (json.dumps({"name": "x", "version": "not a version !!", "build": "0"}).encode(), "py-rattler"),
    (b"[1, 2]", "not a JSON object"),
])
def test_malformed_records_are_reported_by_file(data, message):
    parsed, problems = conda.parse_records({"bad-1-0.json": data})
    assert parsed == [] and problems[0][0] == "bad-1-0.json" and message in problems[0][1]


@given(st.binary(max_size=300))
def test_record_parsing_never_crashes(data):
    parsed, problems = conda.parse_records({"x.json": data})
    assert len(parsed) + len(problems) == 1


@pytest.mark.parametrize("value", [
    "conda-forge", "https://conda.anaconda.org/conda-forge", "http://conda.anaconda.org/conda-forge/",
    "https://conda.anaconda.org/conda-forge/linux-64", "https://CONDA.anaconda.org:443/conda-forge/noarch/x-1-0.conda",
    "https://user:secret@conda.anaconda.org/t/tk-123-abc/conda-forge/linux-64/x-1-0.tar.bz2",
])
def test_channel_spellings_normalise_to_one(value):
    assert conda.normalize_channel(value) == "conda.anaconda.org/conda-forge"


def test_mirrors_map_to_the_channel_they_mirror():
    mirrors = conda.normalize_mirrors([("https://mirror.example.org/cf", "conda-forge")], "https://conda.anaconda.org")
    assert conda.normalize_channel("http://mirror.example.org/cf/noarch/x-1-0.conda", mirrors=mirrors) == \
        "conda.anaconda.org/conda-forge"
    assert conda.normalize_channel("https://mirror.example.org/other", mirrors=mirrors) == "mirror.example.org/other"


def test_defaults_expands_to_anaconda_main_and_r():
    assert conda.allowed_set(["defaults"], "https://conda.anaconda.org") == {
        "repo.anaconda.com/pkgs/main", "repo.anaconda.com/pkgs/r"}


@pytest.mark.parametrize("bad", ["", "not a channel!", "ftp://example.org/x", "https:///x", "https://h:99999/x"])
def test_bad_channels_are_errors(bad):
    with pytest.raises(ValueError):
        conda.normalize_channel(bad)


segment = st.from_regex(r"[a-z0-9][a-z0-9_.\-]{0,10}", fullmatch=True)


@given(st.lists(segment, min_size=1, max_size=3), st.sampled_from(["", "/linux-64", "/noarch", "/osx-arm64"]),
       st.sampled_from(["https://", "http://", "https://u:p@"]), st.booleans())
def test_normalisation_ignores_scheme_credentials_subdir_and_is_idempotent(path, subdir, scheme, token):
    assume(not conda._SUBDIR.match(path[-1]) and path[0] != "t")
    plain = conda.normalize_channel("https://example.org/" + "/".join(path))
    tok = "/t/abc-1" if token else ""
    assert conda.normalize_channel(f"{scheme}Example.ORG{tok}/{'/'.join(path)}{subdir}/") == plain
    assert conda.normalize_channel("https://" + plain) == plain


def test_disallowed_channels_are_listed():
    recs = records(raw_record("tornado", "6.4", channel="https://repo.example.com/evil"), raw_record("idna", "3.7"))
    allowed = conda.allowed_set(["conda-forge"], "https://conda.anaconda.org")
    assert conda.disallowed_channels(recs, allowed, "https://conda.anaconda.org", ()) == [
        "tornado 6.4 (pyhd8ed1ab_0) comes from repo.example.com/evil"]


def python(version):
    return records(raw_record("python", version, "h0_cpython", "linux-64"))


def test_python_eol_dates():
    assert python_eol.eol_date("3.9") == datetime.date(2025, 10, 31)
    assert python_eol.eol_date("3.8") == datetime.date(2024, 10, 7)
    assert python_eol.eol_date("2.6") == datetime.date(2020, 1, 1)  # older than the table: past it (2.7's date)
    assert python_eol.eol_date("3.99") is None
    assert python_eol.eol_date("3.10", [("3.10", "2026-10-31")]) == datetime.date(2026, 10, 31)


def test_python_eol_deny_warn_and_ok():
    day = datetime.date(2025, 11, 1)
    assert conda.python_eol(python("3.9.18"), day, 180)[0] == "eol"
    assert conda.python_eol(python("3.9.18"), datetime.date(2025, 10, 30), 180)[0] == "soon"
    assert conda.python_eol(python("3.11.2"), day, 180) is None
    assert conda.python_eol(python("3.11.2"), datetime.date(2027, 9, 1), 180)[0] == "soon"
    assert conda.python_eol(python("3.11.2"), datetime.date(2027, 9, 1), 0) is None


def test_denied_and_required_specs_with_channels():
    recs = records(raw_record("pycrypto", "2.6.1", "py311_7", "linux-64"), raw_record("jupyterhub", "6.1.1"),
                   raw_record("evil", "1.0", channel="https://repo.example.com/evil"))
    alias = "https://conda.anaconda.org"
    assert conda.denied(recs, ["pycrypto"], alias, ()) == ["pycrypto 2.6.1 (py311_7) matches the denied spec 'pycrypto'"]
    assert conda.denied(recs, ["conda-forge::evil"], alias, ()) == []  # MatchSpec alone would match: channel differs
    assert conda.denied(recs, ["https://repo.example.com/evil::evil"], alias, ())
    assert conda.missing_required(recs, ["jupyterhub >=6,<7"], alias, ()) == []
    assert conda.missing_required(recs, ["jupyterhub >=7"], alias, ()) == [
        "'jupyterhub >=7' is required, installed: jupyterhub 6.1.1 (pyhd8ed1ab_0)"]
    assert conda.missing_required(recs, ["numpy"], alias, ()) == ["'numpy' is required but not installed"]
    assert conda.spec_problem(">>x") and conda.spec_problem("python >=3.10") is None


def test_pip_pollution_is_what_no_record_owns():
    sp = "lib/python3.11/site-packages"
    recs = records(raw_record("idna", "3.7", files=[f"{sp}/idna/__init__.py", f"{sp}/idna-3.7.dist-info/RECORD"]))
    listing = {f"/opt/conda/{sp}": ["idna", "idna-3.7.dist-info", "evil_pkg-1.0.dist-info", "Old.Thing-2.0-py3.11.egg-info",
                                    "allowed_one-1.dist-info"]}
    assert conda.pip_pollution(recs, "/opt/conda", listing, ["Allowed-One"]) == [
        "evil_pkg-1.0.dist-info", "Old.Thing-2.0-py3.11.egg-info"]
    assert conda.dist_name("Old.Thing-2.0-py3.11.egg-info") == "old-thing"


# ---- lock files ------------------------------------------------------------------
EXPLICIT = f"""# platform: linux-64
@EXPLICIT
{FORGE}/linux-64/python-3.11.2-hab00c5b_0_cpython.conda#0123456789abcdef0123456789abcdef
{FORGE}/noarch/idna-3.7-pyhd8ed1ab_0.conda#0123456789abcdef0123456789abcdef
"""

PIXI = f"""version: 6
environments:
  default:
    channels:
    - url: {FORGE}/
    packages:
      linux-64:
      - conda: {FORGE}/linux-64/python-3.11.2-hab00c5b_0_cpython.conda
      - conda: {FORGE}/noarch/idna-3.7-pyhd8ed1ab_0.conda
packages:
- conda: {FORGE}/linux-64/python-3.11.2-hab00c5b_0_cpython.conda
  sha256: {"ab" * 32}
  md5: 0123456789abcdef0123456789abcdef
  depends: []
- conda: {FORGE}/noarch/idna-3.7-pyhd8ed1ab_0.conda
  sha256: {"cd" * 32}
  md5: 0123456789abcdef0123456789abcdef
  depends: []
"""

CONDA_LOCK = f"""version: 1
metadata:
  content_hash: {{linux-64: abc}}
  channels: [{{url: conda-forge, used_env_vars: []}}]
  platforms: [linux-64]
  sources: [environment.yml]
package:
- {{name: python, version: 3.11.2, manager: conda, platform: linux-64, dependencies: {{}}, category: main,
   optional: false, url: "{FORGE}/linux-64/python-3.11.2-hab00c5b_0_cpython.conda",
   hash: {{md5: 0123456789abcdef0123456789abcdef, sha256: {"ab" * 32}}}}}
- {{name: idna, version: "3.7", manager: conda, platform: linux-64, dependencies: {{}}, category: main,
   optional: false, url: "{FORGE}/noarch/idna-3.7-pyhd8ed1ab_0.conda",
   hash: {{md5: 0123456789abcdef0123456789abcdef, sha256: {"cd" * 32}}}}}
"""


@pytest.mark.parametrize("text", [EXPLICIT, PIXI, CONDA_LOCK], ids=["explicit", "pixi", "conda-lock"])
def test_three_lock_formats_read_the_same_packages(tmp_path, text):
    path = tmp_path / "lock"
    path.write_text(text)
    got = {(p.name, p.version, str(p.build), p.md5) for p in locks.load(str(path))}
    assert got == {("python", "3.11.2", "hab00c5b_0_cpython", "0123456789abcdef0123456789abcdef"),
                   ("idna", "3.7", "pyhd8ed1ab_0", "0123456789abcdef0123456789abcdef")}


def test_lock_differences():
    locked = [locks.Locked("python", "3.11.2", "hab00c5b_0_cpython", "0" * 32), locks.Locked("idna", "3.7", "pyhd8ed1ab_0"),
              locks.Locked("numpy", "1.26.4", "py311_0")]
    recs = records(raw_record("python", "3.11.2", "hab00c5b_0_cpython", "linux-64"), raw_record("idna", "3.8"),
                   raw_record("extra", "1.0"))
    assert locks.differences(recs, locked) == [
        "numpy 1.26.4 (py311_0) is locked but not installed",
        "extra 1.0 (pyhd8ed1ab_0) is installed but not in the lock file",
        "idna: locked 3.7 (pyhd8ed1ab_0), installed 3.8 (pyhd8ed1ab_0)",
        "python 3.11.2: md5 0123456789abcdef0123456789abcdef differs from the locked " + "0" * 32,
    ]


@pytest.mark.parametrize("text, message", [
    ("@EXPLICIT\nnot a url\n", "not a valid explicit environment file"),
    ("@EXPLICIT\nhttps://x.org/c/noarch/pkg.zip\n", "not a conda package URL"),
    ("@EXPLICIT\nhttps://x.org/c/noarch/a-1-0.conda#nothex\n", "bad hash"),
    ("@EXPLICIT\n", "lists no packages"),
    ("version: 6\npackages: [\n", "not a valid conda-lock or pixi.lock file"),
    (EXPLICIT + f"{FORGE}/noarch/idna-3.8-pyhd8ed1ab_0.conda\n", "listed twice: idna"),
])
def test_broken_lock_files_name_the_file_and_problem(tmp_path, text, message):
    path = tmp_path / "broken.lock"
    path.write_text(text)
    with pytest.raises(locks.LockError, match=message) as e:
        locks.load(str(path))
    assert str(path) in str(e.value)


def test_pixi_environment_and_platform_must_exist(tmp_path):
    path = tmp_path / "pixi.lock"
    path.write_text(PIXI)
    with pytest.raises(locks.LockError, match="no environment 'gpu'"):
        locks.load(str(path), "gpu")
    with pytest.raises(locks.LockError, match="no platform 'osx-arm64'"):
        locks.load(str(path), platform="osx-arm64")


name = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
version = st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}", fullmatch=True)
build = st.from_regex(r"[a-z0-9]{1,8}_[0-9]{1,2}", fullmatch=True)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # regex strategies, slow on a loaded CI
@given(st.lists(st.tuples(name, version, build, st.from_regex(r"[0-9a-f]{32}", fullmatch=True)),
                min_size=1, max_size=8, unique_by=lambda p: p[0]))
def test_explicit_files_round_trip(tmp_path_factory, packages):
    path = tmp_path_factory.mktemp("lock") / "explicit.txt"
    path.write_text("@EXPLICIT\n" + "".join(f"{FORGE}/noarch/{n}-{v}-{b}.conda#{m}\n" for n, v, b, m in packages))
    assert [(p.name, p.version, p.build, p.md5) for p in locks.load(str(path))] == packages
