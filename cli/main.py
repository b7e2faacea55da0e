"""``riskctl``: the one command-line entry point. Each package registers its own subcommands.

A subcommand module exposes ``register(subparsers)``; each parser it adds sets
``handler=fn`` where ``fn(args, settings) -> int`` is the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pydantic import ValidationError

from common.settings import Settings, load_settings

# Modules that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES = (
    "cli.pipeline",
    "cli.models",
    "cli.policy",
    "cli.simulate",
    "cli.archive",
    "cli.console",
    "cli.audit",
    "cli.acls",
    "cli.credit",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="riskctl",
        description="Customs risk-control pipeline: brokers, topics, workers, models, policy, simulator.",
    )
    parser.add_argument("--settings", metavar="FILE", help="settings file (TOML); env RISKCTL_SETTINGS also works")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings: Settings = load_settings(args.settings)
    except (ValidationError, FileNotFoundError, ValueError) as exc:
        print(f"riskctl: invalid settings: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args, settings) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
