"""The `mu2net` subcommands that run, deploy and inspect the system (registered by cli.py),
one module per concern: `deploy` (Kubeflow), `local` (kfp.local runs), `admin` (create and
inspect a store), `history` (versions, show, diff), `store` (check, repair, cat, rollback,
gc), `serve` (predict, export).

Heavy imports (TensorFlow, kfp) happen inside the command that needs them. The commands that
talk to kfp reach the `pipelines` package through importlib: the library never imports kfp.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from mu2net.commands import admin, deploy, history, local, serve, store

# Imported by tests and benchmarks.
from mu2net.commands.deploy import compile_to
from mu2net.commands.local import DEMO_TASKS, check_cycles, cycle_requests


def register(sub: Any) -> None:
    """Add every command to the CLI's subparsers."""
    add: Callable[..., argparse.ArgumentParser] = sub.add_parser
    for module in (deploy, local, admin, history, store, serve):
        module.register(add)


__all__ = ["DEMO_TASKS", "check_cycles", "compile_to", "cycle_requests", "register"]
