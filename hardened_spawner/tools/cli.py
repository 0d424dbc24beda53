"""The ``hardened-spawner`` command, for admins and image CI pipelines.

Exit codes: 0 ok, 1 policy violation, 2 usage or configuration error.
"""

import argparse
import json
import sys

from . import network_firewall
from .config_check import load_config_file, problems_in


def _load(args):
    """The hub configuration ``--config`` names, or None after saying why it cannot be loaded."""
    try:
        return load_config_file(args.config)
    except Exception as e:  # any error loading the file is a config error
        print(f"{args.config}: cannot load: {e}", file=sys.stderr)
        return None


def _validate_config(args):
    config = _load(args)
    if config is None:
        return 2
    try:
        problems = problems_in(config)
    except Exception as e:  # traitlets refuses a value of the wrong type
        print(f"{args.config}: invalid setting: {e}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps({"config": args.config, "ok": not problems,
                          "problems": [{"setting": s, "message": m} for s, m in problems]}))
    elif problems:
        for setting, message in problems:
            print(f"{setting}: {message}")
    else:
        print(f"{args.config}: ok")
    return 1 if problems else 0


def _check_image(args):
    from .check_image import CheckError, attest, check

    config = _load(args)
    if config is None:
        return 2
    try:
        if args.attest:
            decision, envelope = attest(args.image, config)
        else:
            decision, _ = check(args.image, config)
    except CheckError as e:
        print(f"check-image {args.image}: {e}", file=sys.stderr)
        return 2
    if args.attest:  # the envelope alone on stdout, for a file or a pipe; the verdict on stderr
        print(envelope.decode())
        print(f"{args.image} ({decision.digest}): {'admitted' if decision.admitted else 'DENIED'}", file=sys.stderr)
    elif args.format == "json":
        print(json.dumps(decision.as_dict(args.image)))
    else:
        verdict = "admitted" if decision.admitted else "DENIED"
        print(f"{args.image} ({decision.digest}): {verdict}")
        if decision.signature:
            print(f"  signature: {decision.signature}")
        if decision.provenance:
            print(f"  provenance: {decision.provenance}")
        for f in decision.findings:
            print(f"  {f.action.upper():4} {f.rule} [{f.severity}] {f.message}")
            print(f"       fix: {f.remediation}")
    return 0 if decision.admitted else 1


def _sbom(args):
    from .check_image import CheckError
    from .sbom import document

    config = _load(args)
    if config is None:
        return 2
    try:
        text = document(args.image, config)
    except CheckError as e:
        print(f"sbom {args.image}: {e}", file=sys.stderr)
        return 2
    if args.output == "-":
        print(text)
    else:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="hardened-spawner", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate-config", help="check a jupyterhub_config.py for unsafe settings")
    validate.add_argument("--config", default="jupyterhub_config.py")
    validate.add_argument("--format", choices=("text", "json"), default="text")
    validate.set_defaults(func=_validate_config)
    check = sub.add_parser("check-image", help="check an image against the hub's admission policy")
    check.add_argument("image", help="image reference, present on the Docker daemon")
    check.add_argument("--config", default="jupyterhub_config.py")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.add_argument("--attest", action="store_true",
                       help="print the hub's signed SLSA verification summary (a DSSE envelope) instead of the report")
    check.set_defaults(func=_check_image)
    bom = sub.add_parser("sbom", help="write the CycloneDX 1.6 SBOM of what admission reads from an image")
    bom.add_argument("image", help="image reference, present on the Docker daemon")
    bom.add_argument("--config", default="jupyterhub_config.py")
    bom.add_argument("--output", "-o", default="-", help="file to write (default: standard output)")
    bom.set_defaults(func=_sbom)
    secrets = sub.add_parser("check-secrets", help="check a deployment's secret files (owner, 0600, present)")
    secrets.add_argument("names", nargs="*", help="files under --dir to check (default: every secret deploy/ uses)")
    secrets.add_argument("--dir", default="/run/hs-secrets")
    secrets.add_argument("--owner", type=int, default=0, help="the uid that must own them (default: root)")
    secrets.set_defaults(func=_check_secrets)
    network_firewall.add_parser(sub)
    return parser


def _check_secrets(args):
    from .secret_files import check_command

    return check_command(args)


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
