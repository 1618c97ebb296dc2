# PYTHON_ARGCOMPLETE_OK
"""The `mu2net` command line. Errors are one clear line on stderr and a non-zero exit.

Conventions (README, "Command line"): `mu2net` alone, or a command group alone (`mu2net store`),
prints its help and exits 0; a usage error exits 2; every option has a description and shows
its default; `--json` wherever a script reads the output; a deprecated spelling of an option
still works, hidden from the help, and prints a one-line warning. TensorFlow's start-up lines
are silenced before anything imports it. Shell completion through argcomplete when installed:
`eval "$(register-python-argcomplete mu2net)"`.

Each subcommand lives in a `_cmd_<name>` function registered by its module's `register`; heavy
imports (TensorFlow, kfp) happen inside the command that needs them, so `mu2net --help` is
instant.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from typing import Any

from mu2net.commands.common import help_command
from mu2net.config import CONFIG_NAMES, get_config
from mu2net.errors import Mu2NetError

# The help's command groups, in order; a command no group names is listed under "Other".
COMMAND_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Run", ("demo", "onboard", "iterate", "queue")),
    ("Inspect", ("status", "versions", "show", "diff", "report", "config", "version")),
    ("Operate", ("init", "root", "store", "rollback", "gc", "alias")),
    ("Deploy and serve", ("compile", "submit", "schedule", "export", "predict")),
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks (the grouped command list) and appends
    `(default: X)` to an option's help unless the help already names its default, the option
    is required, or the default is empty (None, False, "", [])."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or action.required or not action.option_strings
                or default is None or default is False or default is argparse.SUPPRESS
                or (isinstance(default, str | list) and not default)):
            return text
        return f"{text} (default: %(default)s)"


class Mu2NetParser(argparse.ArgumentParser):
    """Every parser of the CLI (subparsers inherit the class): the shared help formatter."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


class _VersionAction(argparse.Action):
    """`mu2net --version`: the package and the code version (the image tag), then exit 0."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from mu2net.version import entry_point_version, package_version

        print(f"mu2net {package_version()} (code version {entry_point_version()})")
        parser.exit(0)


# Commands that load a model: TensorFlow is imported up front, quietly (`import_tensorflow`).
TENSORFLOW_COMMANDS = frozenset({"predict", "export", "init", "root", "demo"})
# What TensorFlow writes to stderr while it is imported, before absl logging is initialised,
# whatever TF_CPP_MIN_LOG_LEVEL says (TF 2.17 to 2.21; tensorflow/tensorflow#100442).
_TF_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|"
                       r"[IW]\d{4} [\d:. ]+\d+ [\w.]+\.cc:\d+\]|"
                       r"To enable the following instructions:|"
                       r"\S+ [\d:.]+: [IW] \S+\.cc:\d+\])")


def silence_tensorflow() -> None:
    """TensorFlow's log lines below errors off (set before TensorFlow is first imported; a
    user's own setting wins)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow() -> None:
    """Import TensorFlow with its start-up lines (oneDNN, absl) dropped: they are written to
    file descriptor 2 by C++ before TF_CPP_MIN_LOG_LEVEL applies, so stderr is caught around
    the import and every other line is written back."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode("utf-8", errors="replace")
            sys.stderr.write("".join(line for line in text.splitlines(keepends=True)
                                     if not _TF_NOISE.match(line)))


def _cmd_config(args: argparse.Namespace) -> int:
    config = get_config(args.name)
    if args.method_version:
        print(config.method_version)
    else:
        print(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    return 0


def _command_list(sub: Any) -> str:
    """The grouped command list the top-level help shows."""
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    width = max(map(len, helps), default=8) + 2
    listed: set[str] = set()
    lines = ["commands:"]
    groups = [*COMMAND_GROUPS, ("Other", tuple(n for n in helps if not any(
        n in names for _, names in COMMAND_GROUPS)))]
    for title, names in groups:
        names = tuple(n for n in names if n in helps and n not in listed)
        if not names:
            continue
        lines.append(f"  {title}:")
        for name in names:
            listed.add(name)
            lines += textwrap.wrap(helps[name], 96, initial_indent=f"    {name:<{width}}",
                                   subsequent_indent=" " * (4 + width))
    return "\n".join(lines)


def _build_parser() -> argparse.ArgumentParser:
    parser = Mu2NetParser(
        prog="mu2net", usage="mu2net [-h] [--version] COMMAND ...",
        description=__doc__.splitlines()[0],
        epilog="`mu2net COMMAND --help` describes a command. Shell completion: "
               "eval \"$(register-python-argcomplete mu2net)\"")
    parser.add_argument("--version", action=_VersionAction,
                        help="print the package and code version and exit")
    # The commands are listed, grouped, in the description (`_command_list`), not by argparse.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS,
                                prog="mu2net")

    p = sub.add_parser("config", help="print a config as JSON, the starting point of a config "
                                      "file (`mu2net config cpu_demo > my.json`), or its "
                                      "method version")
    p.add_argument("name", metavar="NAME|FILE",
                   help=f"a named config {list(CONFIG_NAMES)} or a .json/.yaml config file")
    p.add_argument("--method-version", action="store_true", help="print only the method version")
    p.set_defaults(func=_cmd_config)

    from mu2net import commands  # run, deploy and inspect commands

    commands.register(sub)
    parser.set_defaults(func=help_command(parser))
    parser.description = f"{parser.description}\n\n{_command_list(sub)}"
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


def _autocomplete(parser: argparse.ArgumentParser) -> None:
    """Shell completion when argcomplete is installed (a no-op unless the shell asks)."""
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def main(argv: Sequence[str] | None = None) -> int:
    silence_tensorflow()
    parser = _build_parser()
    _autocomplete(parser)
    args = parser.parse_args(argv)
    if getattr(args, "command", None) in TENSORFLOW_COMMANDS:
        import_tensorflow()
    try:
        from mu2net.commands.common import resolve_store

        resolve_store(args)
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
