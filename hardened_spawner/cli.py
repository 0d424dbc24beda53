"""The ``hardened-spawner`` command, for admins and image CI pipelines.

Exit codes: 0 ok, 1 policy violation, 2 usage or configuration error.
"""

import argparse
import json
import sys

from .config_check import load_config_file, problems_in


def _validate_config(args):
    try:
        config = load_config_file(args.config)
    except Exception as e:  # any error loading the file is a config error
        print(f"{args.config}: cannot load: {e}", file=sys.stderr)
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


def build_parser():
    parser = argparse.ArgumentParser(prog="hardened-spawner", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate-config", help="check a jupyterhub_config.py for unsafe settings")
    validate.add_argument("--config", default="jupyterhub_config.py")
    validate.add_argument("--format", choices=("text", "json"), default="text")
    validate.set_defaults(func=_validate_config)
    return parser


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
