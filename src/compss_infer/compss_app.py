"""The script runcompss / enqueue_compss run: ``compss_app.py CONFIG [compss-infer run flags]``.

It is the COMPSs master: it runs ``compss-infer run`` with the engine forced to ``compss`` (the
tasks are submitted and waited on from here).  ``runcompss`` can exit 0 when the application
failed, so the last line this prints is the verdict to trust::

    compss-infer: exit status 1 (finished, some images failed)

(the same number is ``exit_code`` in ``<output>.summary.json``).
"""
from __future__ import annotations

import os
import sys

# sys.argv[0], not __file__: the real COMPSs master execs this source inside pycompss/runtime/launch.py's
# globals, where __file__ is launch.py's.  Run as a script, the app's folder is on sys.path (first, for
# plain python): the package's modules (config, graph, ...) must not shadow top-level ones, and the
# package must be importable.
if os.path.basename(sys.argv[0] if sys.argv else "") == "compss_app.py":
    _HERE = os.path.dirname(os.path.abspath(sys.argv[0]))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    if os.path.dirname(_HERE) not in map(os.path.abspath, sys.path):
        sys.path.append(os.path.dirname(_HERE))

STATUS = {0: "every image classified", 1: "finished, some images failed", 2: "refused before any work",
          3: "aborted mid-run; finished chunks kept for --resume", 130: "interrupted; finished chunks kept for --resume"}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from compss_infer.cli import STARTED, _setup_logging, run_guarded
    from compss_infer.commands.run import print_summary
    from compss_infer.run.flags import add_run_arguments, flags_from_args
    from compss_infer.run.launch import compss_config
    from compss_infer.run.runner import run

    p = argparse.ArgumentParser(prog="compss_app.py", description="compss-infer run, as a COMPSs application")
    add_run_arguments(p)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    args = p.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)

    def body() -> int:
        summary = run(compss_config(args.config, flags_from_args(args), args.sets), started=STARTED)
        print_summary(summary)
        return summary.exit_code

    code = run_guarded(body)
    sys.stderr.flush()
    print(f"compss-infer: exit status {code} ({STATUS.get(code, 'see above')})", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
