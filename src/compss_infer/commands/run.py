"""``compss-infer run [CONFIG.yaml] [flags]``: classify a folder or list of images."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..runflags import RUN_FLAGS, RUN_SWITCHES, add_run_arguments, flags_from_args  # noqa: F401 - moved there


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="classify images", description=__doc__)
    add_run_arguments(p)
    p.set_defaults(handler=handle)


def print_summary(summary: Any, stream: Any = None) -> None:
    stream = stream or sys.stdout
    line = (f"compss-infer: {summary.images} images, {summary.classified} classified, {summary.failed} failed "
            f"in {summary.wall_s:.1f}s ({summary.images_per_s:.0f} img/s) -> {summary.output}")
    if summary.accuracy is not None:
        coverage = (summary.data.get("accuracy") or {}).get("coverage")  # "accuracy X on N of M images"
        line += f"; {coverage}" if coverage else f"; accuracy {summary.accuracy:.4f}"
    print(line, file=stream)
    if summary.report:
        print(f"compss-infer: report {summary.report}", file=stream)


def handle(args: argparse.Namespace) -> int:
    from ..config import build_config
    flags = flags_from_args(args)
    if getattr(args, "quiet", False):
        flags.setdefault("run", {})["progress"] = False
    cfg = build_config(args.config, flags, args.sets)
    from ..checks import refuse_early
    refuse_early(cfg)  # the instant refusals, before TensorFlow starts loading anywhere
    if cfg.run.engine == "local" and not cfg.run.resume:
        from ..engines.local import prestart
        prestart(cfg.run.start_method)  # TensorFlow loads in the forkserver while we import the rest
    from ..cli import STARTED
    from ..runner import run
    summary = run(cfg, started=STARTED)
    print_summary(summary)
    return summary.exit_code
