"""Files added inside a package directory a record owns (imports.nested_unowned): what Python imports there."""

import importlib.machinery

from admission_images import SP, record

from hardened_spawner.admission import conda, imports
from hardened_spawner.admission.facts import Entry

FILE, DIR, LINK = Entry(0o644, "file", 1), Entry(0o755, "dir", 0), Entry(0o777, "symlink", 0, "/opt/elsewhere")
TORNADO = record("tornado", "6.6.1", "py311_0", "linux-64", files=[
    f"lib/python3.11/site-packages/tornado/{p}" for p in ("__init__.py", "web.py", "platform/__init__.py",
                                                          "platform/asyncio.py", "speedups.abi3.so")])


def found(entries, records=(TORNADO,), files=None):
    parsed, problems = conda.parse_records({f"{r['name']}.json": __import__("json").dumps(r).encode() for r in records})
    assert problems == []
    listing = {f"{SP}/{p}": e for p, e in entries.items()}
    return [(p[len(SP) + 1:], m, shadows) for p, m, _, shadows in
            imports.nested_unowned(parsed, "/opt/conda", SP, listing, files or {})]


OWN = {"tornado": DIR, "tornado/__init__.py": FILE, "tornado/web.py": FILE, "tornado/platform": DIR,
       "tornado/platform/__init__.py": FILE, "tornado/platform/asyncio.py": FILE, "tornado/speedups.abi3.so": FILE}


def test_every_suffix_python_imports_on_this_platform_is_checked():
    assert all(s.endswith(imports.IMPORTABLE) for s in importlib.machinery.all_suffixes())


def test_the_package_as_installed_has_nothing_unowned():
    assert found({**OWN, "tornado/py.typed": FILE, "tornado/templates": DIR, "tornado/templates/x.html": FILE}) == []


def test_what_python_would_import_instead_of_the_owned_module():
    added = {"tornado/web": DIR, "tornado/web/__init__.py": FILE, "tornado/web.abi3.so": FILE,
             "tornado/web.cpython-311-x86_64-linux-gnu.so": FILE, "tornado/__pycache__": DIR,
             "tornado/__pycache__/web.cpython-311.pyc": FILE, "tornado/platform/asyncio.so": FILE,
             "tornado/__init__.pyc": FILE}
    assert found({**OWN, **added}) == [
        ("tornado/__init__.pyc", "tornado", True),
        ("tornado/__pycache__/web.cpython-311.pyc", "tornado.web", True),
        ("tornado/platform/asyncio.so", "tornado.platform.asyncio", True),
        ("tornado/web.abi3.so", "tornado.web", True),
        ("tornado/web.cpython-311-x86_64-linux-gnu.so", "tornado.web", True),
        ("tornado/web/__init__.py", "tornado.web", True)]


def test_added_modules_subpackages_and_links_are_found_too():
    added = {"tornado/evil.py": FILE, "tornado/sub": DIR, "tornado/sub/deep": DIR, "tornado/sub/deep/x.py": FILE,
             "tornado/linked": LINK}
    assert found({**OWN, **added}) == [("tornado/evil.py", "tornado.evil", False),
                                       ("tornado/linked", "tornado.linked", False),
                                       ("tornado/sub/deep/x.py", "tornado.sub.deep.x", False)]


def test_a_pip_record_of_a_distribution_no_conda_record_owns_accounts_for_its_files():
    added = {"tornado/plugin.py": FILE, "tornadoplugin-1.0.dist-info": DIR}
    record_file = {f"{SP}/tornadoplugin-1.0.dist-info/RECORD": b"tornado/plugin.py,sha256=x,1\n"}
    assert found({**OWN, **added}, files=record_file) == []
    assert found({**OWN, **added}) == [("tornado/plugin.py", "tornado.plugin", False)]


def test_a_crafted_pyc_of_an_owned_top_level_module_is_found():
    six = record("six", "1.17.0", files=["lib/python3.11/site-packages/six.py",
                                         "lib/python3.11/site-packages/__pycache__/six.cpython-311.pyc"])
    entries = {**OWN, "six.py": FILE, "__pycache__": DIR, "__pycache__/six.cpython-311.pyc": FILE,
               "__pycache__/tornado.cpython-311.pyc": FILE, "__pycache__/evil.cpython-311.pyc": FILE}
    assert found(entries, records=(TORNADO, six)) == []  # six's own; no tornado.py or evil.py: never loaded
    bare_six = record("six", "1.17.0", files=["lib/python3.11/site-packages/six.py"])
    assert found(entries, records=(TORNADO, bare_six)) == [("__pycache__/six.cpython-311.pyc", "six", True)]


def test_top_level_names_no_record_owns_are_left_to_the_top_level_check():
    assert found({**OWN, "Crypto": DIR, "Crypto/__init__.py": FILE, "evil.py": FILE}) == []
