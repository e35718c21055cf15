"""The ``compss-infer`` command: subcommands, and the mapping from errors to exit codes.

Exit codes: 0 every image classified; 1 the run finished but some images failed; 2 refused before
any work (usage, config, model, input); 3 aborted mid-run (journal kept); 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import time
from typing import Callable, Sequence

from ._version import __version__
from .core.errors import CompssInferError, os_error_line

STARTED = time.monotonic()  # as early as the command can tell: wall times count our start-up

# Each module in compss_infer.commands registers one subcommand.
COMMANDS = ("run", "demo", "submit", "freeze", "inspect", "optimize", "quantize", "report")


def plain_text(doc: str | None) -> str | None:
    """Docstrings serve as --help text: drop the reStructuredText markup (``code``, :role:`x`)."""
    if not doc:
        return doc
    doc = re.sub(r":[a-z]+:`([^`]*)`", r"\1", doc)
    return doc.replace("``", "")


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
        subparser.description = plain_text(subparser.description)
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


def say(line: str) -> None:
    """One line on stderr; nothing when stderr is closed (never onto stdout, which carries output)."""
    if sys.stderr is None:
        return
    try:
        print(line, file=sys.stderr)
    except (OSError, ValueError):
        pass


def run_guarded(fn: Callable[[], int]) -> int:
    """Run a command body; map what it raises to one line on stderr and an exit code."""
    try:
        return int(fn() or 0)
    except CompssInferError as exc:
        say(f"compss-infer: error: {exc.one_line()}")
        return exc.exit_code
    except KeyboardInterrupt:
        say("compss-infer: interrupted")
        return 130
    except BrokenPipeError as exc:
        if _stdout_gone(exc):
            return quiet_stdout()
        say(f"compss-infer: error: {os_error_line(exc)}")
        return 2
    except UnicodeDecodeError as exc:  # a binary file where text was expected, wherever it was read
        say(f"compss-infer: error: a file given is not UTF-8 text ({exc.reason} at byte {exc.start})")
        return 2
    except OSError as exc:  # no traceback for a file system error, whichever command met it
        say(f"compss-infer: error: {os_error_line(exc)}")
        return 2
    except Exception as exc:  # Interrupted and friends carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is None:
            raise
        say(f"compss-infer: {exc}")
        return int(code)


def _stdout_gone(exc: BaseException) -> bool:
    """Whether this BrokenPipeError is the reader of our stdout leaving (``... | head``)."""
    if getattr(exc, "filename", None) is not None:
        return False
    try:
        import select
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def quiet_stdout() -> int:
    """Stdout was closed by its reader: point it at /dev/null so the exit flush stays quiet.

    Exit code 141 (128 + SIGPIPE) is what a shell sees from any tool ended by a closed pipe.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C while Python imports the commands
        say("compss-infer: interrupted")
        return 130
    _setup_logging(args.verbose, args.quiet)
    code = run_guarded(lambda: args.handler(args))
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
        return code or 141
    except (OSError, ValueError):
        pass
    return code


if __name__ == "__main__":
    sys.exit(main())
