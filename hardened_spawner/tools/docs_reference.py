"""Write the configuration reference (docs/reference.md) from the traits' help strings.

Covers every configurable class of this package: the settings both spawners
share (``HardenedSpawner``), each spawner's own, the authenticator, the key
stores, the SSH keys service and the SSH gateway. Each trait is listed once, under the first class
that declares it; inherited DockerSpawner/OAuthenticator options keep their
upstream documentation.
Run: ``python -m hardened_spawner.tools.docs_reference docs/reference.md``.
"""

import inspect
import sys
from importlib.metadata import entry_points

GROUPS = ("jupyterhub.spawners", "jupyterhub.authenticators")


def our_classes():
    """``[(how it is named in config, class)]``, shared settings first."""
    from ..keys.idp import IdPKeyStore
    from ..keys.stores import FileKeyStore, KeyStore, SwarmSecretKeyStore
    from ..keys.vault import VaultKeyStore
    from ..spawner import HardenedSpawner
    from ..ssh.gateway import SSHGateway
    from ..ssh.keys_service import SSHKeysService
    from ..ssh.service_app import HubServiceApp

    found = [("shared by `hardened-docker` and `hardened-swarm`", HardenedSpawner)]
    for group in GROUPS:
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            if ep.value.startswith("hardened_spawner.") and ep.load() not in [c for _, c in found]:
                found.append((f"entry point `{ep.name}`", ep.load()))
    found += [("the key store interface", KeyStore), ("`ssh_key_store_class = 'file'`", FileKeyStore),
              ("`ssh_key_store_class = 'vault'`", VaultKeyStore),
              ("`ssh_key_store_class = 'hardened_spawner.keys.stores.SwarmSecretKeyStore'`", SwarmSecretKeyStore),
              ("`ssh_key_store_class = 'idp'`", IdPKeyStore),
              ("both SSH services (`keys_service()` and `gateway_service()`)", HubServiceApp),
              ("`python -m hardened_spawner.ssh.keys_service`", SSHKeysService),
              ("`python -m hardened_spawner.ssh.gateway`", SSHGateway)]
    return found


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
                inspect.cleandoc(trait.help or "(undocumented)"),
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
