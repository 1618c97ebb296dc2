"""The `mu2net` command line. Errors are one clear line on stderr and a non-zero exit.

Each subcommand lives in a `_cmd_<name>` function registered in `_build_parser`; heavy imports
(TensorFlow, kfp) happen inside the command that needs them, so `mu2net --help` is instant.
"""

from __future__ import annotations

import argparse
import errno
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


def error_line(exc: BaseException, store: str | None = None) -> str:
    """One line for an error the CLI reports without a traceback.

    The project's own errors carry their message as written. An `OSError` names its path (the
    store's, when the error did not name one: a full disk while writing an object), so a full
    disk or a refused permission says where. A `ValueError` from a library call is bad input.
    """
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else store
        text = f"{exc.strerror}: {where!r}" if where else exc.strerror
        if exc.errno == errno.ENOSPC:
            text += " (free some space or choose another location)"
    elif isinstance(exc, Mu2NetError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
        return rc
    except BrokenPipeError:  # `mu2net status | head`: the reader left; not an error of ours
        _silence_stdout()
        return 0
    # Named types only: anything else is a bug and keeps its traceback.
    except (Mu2NetError, OSError, ValueError) as exc:
        print(f"mu2net: error: {error_line(exc, getattr(args, 'store', None))}",
              file=sys.stderr)
        return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush raises nothing more."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (tests capture it)
        pass


if __name__ == "__main__":
    sys.exit(main())
