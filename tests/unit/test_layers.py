"""Imports point down the layers: tools -> ssh -> spawner/authenticator -> admission/keys -> decisions -> base.

Each module of the package is parsed (not imported) and every import of
another hardened_spawner module is checked against the layer table.
Within a layer, a package imports only itself (admission does not import
keys). Compatibility aliases, which only
re-export a moved name, may import anything below the top.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "hardened_spawner"
LAYERS = {
    "errors": 0, "units": 0, "audit": 0, "__init__": 0,
    "decisions": 1, "telemetry": 1,
    "admission": 2, "keys": 2, "id_tokens": 2, "pages": 2,
    "spawner": 3, "authenticator": 3,
    "ssh": 4, "operations": 4,
    "tools": 5,
}
ALIASES = {"config_check"}  # hardened_spawner.config_check: kept for `from ... import enforce_config` in configs


def unit(module):
    """The first component under hardened_spawner: the package (or top-level module) a module belongs to."""
    return module.split(".")[1] if "." in module else "__init__"


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        yield ".".join(rel.parts), path


def imports(module, path):
    """Absolute names of the hardened_spawner modules ``module`` imports."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("hardened_spawner"):
                names = [f"{target}.{a.name}" for a in node.names]
                yield from (n if (PACKAGE.parent / n.replace(".", "/")).with_suffix(".py").exists()
                            or (PACKAGE.parent / n.replace(".", "/")).is_dir() else target for n in names)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("hardened_spawner"))


def test_every_package_has_a_layer():
    assert {unit(m) for m, _ in modules()} - ALIASES <= set(LAYERS)


@pytest.mark.parametrize("module, path", list(modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_point_down(module, path):
    mine = unit(module)
    if mine in ALIASES:
        return
    for target in imports(module, path):
        theirs = unit(target)
        if target == "hardened_spawner":  # the package's __version__
            continue
        assert LAYERS[theirs] < LAYERS[mine] or theirs == mine, (
            f"{module} (layer {LAYERS[mine]}: {mine}) imports {target} (layer {LAYERS[theirs]}: {theirs})")


def test_no_module_is_over_400_lines():
    sizes = {m: len(p.read_text().splitlines()) for m, p in modules()}
    assert {m: n for m, n in sizes.items() if n > 400} == {}


def test_every_integration_module_declares_what_it_needs():
    """``pytest -m "not docker"`` must not collect a test that needs the daemon."""
    tests = Path(__file__).resolve().parents[1]
    for path in sorted(p for d in ("integration", "e2e", "attacks") for p in (tests / d).glob("test_*.py")):
        marks = [node for node in ast.parse(path.read_text()).body
                 if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets)]
        assert marks, f"{path.name} has no pytestmark (docker and/or hub)"
