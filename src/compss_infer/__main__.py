"""``python -m compss_infer`` = the ``compss-infer`` command."""
import sys


def _clear_caught_interrupt() -> None:
    """Keep exit code 130 after a Ctrl-C we handled.

    CPython remembers a KeyboardInterrupt that left code run by ``exec``/``eval`` of a string (dataclasses
    and namedtuple build their methods that way, so any import can be the one interrupted) even when we
    catch it, and under ``python -m`` turns the exit into death by SIGINT (-2) at the very end.  Any later
    string ``exec`` that finishes clears that mark.
    """
    exec("pass")


try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while Python is still importing the command: one line, no traceback
    sys.stderr.write("compss-infer: interrupted\n")
    _clear_caught_interrupt()
    sys.exit(130)

if __name__ == "__main__":
    code = main()
    _clear_caught_interrupt()
    sys.exit(code)
