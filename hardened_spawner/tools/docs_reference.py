"""Write the configuration reference (docs/reference.md) from the traits' help strings.

Covers every configurable class of this package: the settings both spawners
share (``HardenedSpawner``), each spawner's own, the authenticator, the key
stores (every entry point of ``hardened_spawner.key_stores``), the SSH keys
service and the SSH gateway. Each trait is listed once, under the first class
that declares it; inherited DockerSpawner/OAuthenticator options keep their
upstream documentation.
Run: ``python -m hardened_spawner.tools.docs_reference docs/reference.md``.
"""

import inspect
import sys
from importlib.metadata import entry_points

from jupyterhub.traitlets import EntryPointType

GROUPS = ("jupyterhub.spawners", "jupyterhub.authenticators")


def our_classes():
    """``[(how it is named in config, class)]``, shared settings first."""
    from ..keys.stores import GROUP as KEY_STORES
    from ..keys.stores import KeyStore
    from ..spawner import HardenedSpawner
    from ..ssh.gateway import SSHGateway
    from ..ssh.keys_service import SSHKeysService
    from ..ssh.service_app import HubServiceApp

    found = [("shared by `hardened-docker` and `hardened-swarm`", HardenedSpawner)]
    for group in GROUPS:
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            if ep.value.startswith("hardened_spawner.") and ep.load() not in [c for _, c in found]:
                found.append((f"entry point `{ep.name}`", ep.load()))
    found.append(("the key store interface", KeyStore))
    for ep in sorted(entry_points(group=KEY_STORES), key=lambda e: e.name):
        if ep.value.startswith("hardened_spawner."):
            found.append((f"`ssh_key_store_class = {ep.name!r}`", ep.load()))
    found += [("both SSH services (`keys_service()` and `gateway_service()`)", HubServiceApp),
              ("`python -m hardened_spawner.ssh.keys_service`", SSHKeysService),
              ("`python -m hardened_spawner.ssh.gateway`", SSHGateway)]
    return found


def _default(trait):
    try:
        value = trait.default_value_repr()
    except Exception:  # some traits compute defaults dynamically
        value = "(computed)"
    return value if len(value) < 120 else value[:117] + "..."


def _help(trait):
    """The trait's help text; for a class chosen by entry point name, the names installed."""
    text = inspect.cleandoc(getattr(trait, "_original_help", None) or trait.help or "(undocumented)")
    if isinstance(trait, EntryPointType):
        text += f"\n\nNames in the entry point group `{trait.entry_point_group}`:\n\n" + "\n".join(
            f"- `{name}`: `{ep.value.replace(':', '.')}`" for name, ep in sorted(trait.load_entry_points().items()))
    return text


def render():
    lines = [
        "# Configuration reference",
        "",
        "Generated from the traits' `help=` strings by `python -m hardened_spawner.tools.docs_reference`.",
        "Every DockerSpawner and OAuthenticator option still applies; only the options",
        "hardened_spawner adds are listed here, each once, under the class that declares it.",
        "`c.HardenedSpawner.*` configures both spawners; `c.HardenedDockerSpawner.*` also applies to",
        "HardenedSwarmSpawner (as when it was its subclass), and `c.HardenedSwarmSpawner.*` wins there.",
        "",
    ]
    documented = set()
    for how, cls in our_classes():
        traits = cls.class_traits(config=True)
        own = []
        for name in sorted(traits):
            owner = getattr(traits[name], "this_class", None)
            if owner is None or not owner.__module__.startswith("hardened_spawner") or (owner, name) in documented:
                continue
            documented.add((owner, name))
            own.append((name, traits[name]))
        lines += [f"## {cls.__name__}", "", f"Configured as `c.{cls.__name__}`; {how}.", ""]
        doc = inspect.getdoc(cls)
        if doc:
            lines += [doc, ""]
        for name, trait in own:
            lines += [
                f"### `c.{cls.__name__}.{name}`",
                "",
                f"*{type(trait).__name__}*, default `{_default(trait)}`",
                "",
                _help(trait),
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
