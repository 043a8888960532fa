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
    "fcmcore.cli.evaluate",  # sweep, bdrate, layers, plot
    "fcmcore.cli.train_wrapper",  # train-wrapper
    "fcmcore.cli.train_codec",  # train-codec, train-direct
    "fcmcore.cli.video",  # video
    "fcmcore.cli.train_connector",  # train-connector
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fcm", description="FCM Studio: feature coding for machines (split inference).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name + ".").startswith(exc.name + "."):  # that part is not installed
                continue
            raise
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
