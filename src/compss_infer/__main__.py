"""``python -m compss_infer`` = the ``compss-infer`` command."""
import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while Python is still importing the command: one line, no traceback
    sys.stderr.write("compss-infer: interrupted\n")
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
