"""The ``fcm`` command line.

Each module of this package in ``COMMAND_MODULES`` defines the sub-commands of one part of
fcmcore (``detect``: listings and ``fcm detect``; ``evaluate``: sweep/bdrate/layers/plot;
``train_*``: the trainers; ``video``): it exposes ``add_commands(subparsers)`` and sets
``func`` on its parsers. Every user error is an
``FCMError``: printed as one ``error: ...`` line with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import FCMError

COMMAND_MODULES = [
    "fcmcore.cli.detect",  # models, splits, codecs, wrappers, detect
    "fcmcore.cli.evaluate",  # sweep, layers
    "fcmcore.cli.compare",  # bdrate, plot (no model: starts without torch)
    "fcmcore.cli.train_wrapper",  # train-wrapper
    "fcmcore.cli.train_codec",  # train-codec, train-direct
    "fcmcore.cli.video",  # video
    "fcmcore.cli.train_connector",  # train-connector
]

# Commands that need no model: `fcm bdrate ...` / `fcm plot ...` build a parser with only their
# own module, so start-up does not import torch (~3 s of CPU, more than the 1000-resample
# bootstrap itself). tests/test_cli.py checks the table against the full parser.
LIGHT_COMMANDS = {"bdrate": "fcmcore.cli.compare", "plot": "fcmcore.cli.compare"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``argv`` naming a light command, only that command's module."""
    parser = _Parser(prog="fcm", description="FCM Studio: feature coding for machines (split inference).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules = COMMAND_MODULES
    owner = LIGHT_COMMANDS.get(argv[0]) if argv else None
    if owner in COMMAND_MODULES:
        modules = [owner]
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name + ".").startswith(exc.name + "."):  # that part is not installed
                continue
            raise
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FCMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fcm ... | head`
        return 0
