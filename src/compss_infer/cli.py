"""The ``compss-infer`` command: subcommands, and the mapping from errors to exit codes.

Exit codes: 0 every image classified; 1 the run finished but some images failed; 2 refused before
any work (usage, config, model, input); 3 aborted mid-run (journal kept); 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from typing import Callable, Sequence

from . import __version__
from .errors import CompssInferError

STARTED = time.monotonic()  # as early as the command can tell: wall times count our start-up

# Each module in compss_infer.commands registers one subcommand.
COMMANDS = ("run", "demo", "submit", "freeze", "inspect", "optimize", "quantize", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compss-infer",
        description="Batch image classification with frozen TensorFlow graphs, on one node or a PyCOMPSs cluster.",
    )
    parser.add_argument("--version", action="version", version=f"compss-infer {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    for subparser in sub.choices.values():  # -v/-q also after the subcommand
        subparser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                               help="more log output (-vv: debug)")
        subparser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                               help="only errors on stderr")
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("compss-infer: %(message)s"))
    logger = logging.getLogger("compss_infer")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def run_guarded(fn: Callable[[], int]) -> int:
    """Run a command body; map what it raises to one line on stderr and an exit code."""
    try:
        return int(fn() or 0)
    except CompssInferError as exc:
        print(f"compss-infer: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("compss-infer: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # Interrupted and friends carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is None:
            raise
        print(f"compss-infer: {exc}", file=sys.stderr)
        return int(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    return run_guarded(lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
