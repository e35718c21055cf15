"""``compss-infer run [CONFIG.yaml] [flags]``: classify a folder or list of images."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

RUN_FLAGS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    # flag, section, key, argparse options
    ("--images", "run", "images", {"metavar": "DIR", "help": "folder of images (recursive)"}),
    ("--image-list", "run", "image_list", {"metavar": "FILE", "help": "file with one image path per line"}),
    ("--model", "model", "path", {"metavar": "MODEL", "help": "frozen GraphDef (.pb or .pbtxt)"}),
    ("--labels", "model", "labels", {"metavar": "FILE", "help": "class names, line i = class i"}),
    ("--output", "run", "output", {"metavar": "FILE", "help": "results file (.csv or .jsonl)"}),
    ("--format", "run", "format", {"choices": ["csv", "jsonl"], "help": "results format (default: from the extension)"}),
    ("--engine", "run", "engine", {"choices": ["local", "sequential", "compss"], "help": "where chunks run (default local)"}),
    ("--workers", "run", "workers", {"type": int, "metavar": "N", "help": "local worker processes (default: one per core)"}),
    ("--batch-size", "run", "batch_size", {"type": int, "metavar": "N", "help": "images per session run (default: from the model)"}),
    ("--chunk-size", "run", "chunk_size", {"type": int, "metavar": "N", "help": "images per task (default: from the workload)"}),
    ("--top-k", "run", "top_k", {"type": int, "metavar": "K", "help": "also write the K best classes and scores"}),
    ("--truth", "run", "truth", {"metavar": "CSV", "help": "ground truth (path,class_id) for accuracy"}),
    ("--task-timeout", "run", "task_timeout", {"type": float, "metavar": "SEC", "help": "kill a chunk running longer"}),
    ("--max-retries", "run", "max_retries", {"type": int, "metavar": "N", "help": "retries of a failing image (default 2)"}),
    ("--device", "session", "device", {"choices": ["cpu", "gpu"], "help": "run the session on the CPU or a GPU"}),
)
RUN_SWITCHES: tuple[tuple[str, str, str, bool, str], ...] = (
    ("--overwrite", "run", "overwrite", True, "replace an existing results file"),
    ("--resume", "run", "resume", True, "continue an interrupted run from its journal"),
    ("--no-progress", "run", "progress", False, "no progress bar or progress lines"),
    ("--truth-from-folders", "run", "truth_from_folders", True, "ground truth from <class>/ folder names"),
    ("--allow-unsafe-ops", "model", "allow_unsafe_ops", True, "run graphs with file, Python or network ops"),
    ("--report", "run", "report", True, "also write an HTML report (timeline, throughput, confusion) beside the results"),
)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", metavar="CONFIG.yaml", help="YAML config (sections model, preprocess, session, run)")
    for flag, section, key, opts in RUN_FLAGS:
        p.add_argument(flag, dest=f"{section}.{key}", default=None, **opts)
    for flag, section, key, value, help_text in RUN_SWITCHES:
        p.add_argument(flag, dest=f"{section}.{key}", action="store_const", const=value, default=None, help=help_text)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config key; the value is YAML (repeatable)")


def flags_from_args(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Only the flags the user gave, as a nested dict (section -> key -> value)."""
    tree: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if "." in dest and value is not None:
            section, key = dest.split(".", 1)
            tree.setdefault(section, {})[key] = value
    return tree


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="classify images", description=__doc__)
    add_run_arguments(p)
    p.set_defaults(handler=handle)


def print_summary(summary: Any, stream: Any = None) -> None:
    from ..progress import rates_text
    stream = stream or sys.stdout
    speed = rates_text(summary.images_per_s, getattr(summary, "after_first_images_per_s", None))
    line = (f"compss-infer: {summary.images} images, {summary.classified} classified, {summary.failed} failed "
            f"in {summary.wall_s:.1f}s" + (f" ({speed})" if speed else "") + f" -> {summary.output}")
    if summary.accuracy is not None:
        coverage = (summary.data.get("accuracy") or {}).get("coverage")  # "accuracy X on N of M images"
        line += f"; {coverage}" if coverage else f"; accuracy {summary.accuracy:.4f}"
    print(line, file=stream)
    if summary.report:
        print(f"compss-infer: report {summary.report}", file=stream)


def refuse_model_as_config(path: str | None) -> None:
    """A model passed where the YAML goes: say what was meant instead of a YAML parse error."""
    if not path:
        return
    from ..errors import ConfigError
    from ..modelfiles import model_kind
    kind = model_kind(path)
    if kind:
        raise ConfigError(f"{path} is a {kind} model, not a YAML config: did you mean --model {path}?")


def handle(args: argparse.Namespace) -> int:
    from ..config import build_config
    refuse_model_as_config(args.config)
    flags = flags_from_args(args)
    if getattr(args, "quiet", False):
        flags.setdefault("run", {})["progress"] = False
    cfg = build_config(args.config, flags, args.sets)
    from ..checks import refuse_early
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
    from ..runner import run
    summary = run(cfg, started=STARTED)
    try:
        print_summary(summary)
    except BrokenPipeError:  # the results are written: a closed stdout does not change the exit code
        from ..cli import quiet_stdout
        quiet_stdout()
    return summary.exit_code
