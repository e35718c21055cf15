"""``python -m compss_infer.launch prepare ...``: the entry point ``scripts/launch_runcompss.sh`` calls.

Kept at the package root because users' job scripts name it; the work is in ``commands/launch.py``.
"""
import sys

from .commands.launch import main

if __name__ == "__main__":
    sys.exit(main())
