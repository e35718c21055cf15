"""``compss-infer run [CONFIG.yaml] [flags]``: classify a folder or list of images."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ..run.flags import RUN_FLAGS, RUN_SWITCHES, add_run_arguments, flags_from_args  # noqa: F401 - moved there


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="classify images", description=__doc__)
    add_run_arguments(p)
    p.set_defaults(handler=handle)


def print_summary(summary: Any, stream: Any = None) -> None:
    from ..run.progress import rates_text
    stream = stream or sys.stdout
    speed = rates_text(summary.images_per_s, getattr(summary, "after_first_images_per_s", None))
    line = (f"compss-infer: {summary.images} images, {summary.classified} classified, {summary.failed} failed "
            f"in {summary.wall_s:.1f}s" + (f" ({speed})" if speed else "") + f" -> {summary.output}")
    if summary.accuracy is not None:
        coverage = (summary.data.get("accuracy") or {}).get("coverage")  # "accuracy X on N of M images"
        line += f"; {coverage}" if coverage else f"; accuracy {summary.accuracy:.4f}"
    unlisted = summary.data.get("unlisted_folders")
    if unlisted:  # their images are missing: said here too, not only in a warning line
        line += f"; {unlisted['count']} folder(s) could not be listed (see the warning)"
    print(line, file=stream)
    checked = (summary.data.get("model") or {}).get("card_check")
    if checked:  # an int8 model: what its card says quantize measured against fp32
        from ..model.quantcheck import card_check_line
        print(f"compss-infer: model card: {card_check_line(checked)}", file=stream)
    if summary.report:
        print(f"compss-infer: report {summary.report}", file=stream)


def refuse_model_as_config(path: str | None) -> None:
    """A model passed where the YAML goes: say what was meant instead of a YAML parse error."""
    if not path:
        return
    from ..core.errors import ConfigError
    from ..model.files import model_kind
    kind = model_kind(path)
    if kind:
        raise ConfigError(f"{path} is a {kind} model, not a YAML config: did you mean --model {path}?")


def handle(args: argparse.Namespace) -> int:
    from ..run.config import build_config
    refuse_model_as_config(args.config)
    flags = flags_from_args(args)
    if getattr(args, "quiet", False):
        flags.setdefault("run", {})["progress"] = False
    cfg = build_config(args.config, flags, args.sets)
    from ..run.checks import refuse_early
    refuse_early(cfg)  # the instant refusals, before TensorFlow starts loading anywhere
    from ..model.formats import ignored_settings
    for note in ignored_settings(cfg.model.path, cfg.session):
        logging.getLogger("compss_infer").warning(note)
    if cfg.run.engine == "local" and not cfg.run.resume:
        from ..engines.local import prestart
        from ..model.formats import preload_modules
        # TensorFlow (or LiteRT) loads in the forkserver while we import the rest
        prestart(cfg.run.start_method, preload_modules(cfg.model.path))
    from ..cli import STARTED
    from ..run.runner import run
    summary = run(cfg, started=STARTED)
    try:
        print_summary(summary)
    except BrokenPipeError:  # the results are written: a closed stdout does not change the exit code
        from ..cli import quiet_stdout
        quiet_stdout()
    return summary.exit_code
