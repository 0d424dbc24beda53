"""Write the configuration reference (docs/reference.md) from the traits' help strings.

Covers every class this package registers as a JupyterHub spawner or
authenticator; only the traits hardened_spawner defines (inherited
DockerSpawner/OAuthenticator options keep their upstream documentation).
Run: ``python -m hardened_spawner.tools.docs_reference docs/reference.md``.
"""

import inspect
import sys
from importlib.metadata import entry_points

GROUPS = ("jupyterhub.spawners", "jupyterhub.authenticators")


def our_classes():
    seen = []
    for group in GROUPS:
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            if ep.value.startswith("hardened_spawner.") and ep.value not in [v for v, _, _ in seen]:
                seen.append((ep.value, ep.name, ep.load()))
    return [(name, cls) for _, name, cls in seen]


def _default(trait):
    try:
        value = trait.default_value_repr()
    except Exception:  # some traits compute defaults dynamically
        value = "(computed)"
    return value if len(value) < 120 else value[:117] + "..."


def render():
    lines = [
        "# Configuration reference",
        "",
        "Generated from the traits' `help=` strings by `python -m hardened_spawner.tools.docs_reference`.",
        "Every DockerSpawner and OAuthenticator option still applies; only the options",
        "hardened_spawner adds are listed here.",
        "",
    ]
    for entry_name, cls in our_classes():
        lines += [f"## {cls.__name__}", "", f"Entry point: `{entry_name}`.", ""]
        doc = inspect.getdoc(cls)
        if doc:
            lines += [doc, ""]
        traits = cls.class_traits(config=True)
        for name in sorted(traits):
            trait = traits[name]
            owner = getattr(trait, "this_class", None)
            if owner is None or not owner.__module__.startswith("hardened_spawner"):
                continue
            help_text = inspect.cleandoc(trait.help or "(undocumented)")
            lines += [
                f"### `c.{cls.__name__}.{name}`",
                "",
                f"*{type(trait).__name__}*, default `{_default(trait)}`",
                "",
                help_text,
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if argv:
        with open(argv[0], "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
