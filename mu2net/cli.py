"""The `mu2net` command line. Errors are one clear line on stderr and a non-zero exit.

Each subcommand lives in a `_cmd_<name>` function registered in `_build_parser`; heavy imports
(TensorFlow, kfp) happen inside the command that needs them, so `mu2net --help` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from mu2net.config import CONFIG_NAMES, get_config
from mu2net.errors import Mu2NetError


def _cmd_config(args: argparse.Namespace) -> int:
    config = get_config(args.name)
    if args.method_version:
        print(config.method_version)
    else:
        print(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mu2net", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="print a named config as JSON (or its method version)")
    p.add_argument("name", choices=CONFIG_NAMES)
    p.add_argument("--method-version", action="store_true", help="print only the method version")
    p.set_defaults(func=_cmd_config)

    from mu2net import commands  # run, deploy and inspect commands

    commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Mu2NetError as exc:
        print(f"mu2net: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
