"""The ``run`` flags, shared by ``compss-infer run``, the COMPSs app and the launch helper.

A library module (commands import it, never the reverse), so that ``launch.py`` and
``compss_app.py`` need no command module.
"""
from __future__ import annotations

import argparse
from typing import Any

RUN_FLAGS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    # flag, section, key, argparse options
    ("--images", "run", "images", {"metavar": "DIR", "help": "folder of images (recursive)"}),
    ("--image-list", "run", "image_list", {"metavar": "FILE", "help": "file with one image path per line"}),
    ("--shards", "run", "shards", {"metavar": "SPEC", "help": "WebDataset tar shards: data/{00000..00999}.tar, a folder "
                                   "of .tar files, or a list file"}),
    ("--model", "model", "path", {"metavar": "MODEL", "help": "frozen GraphDef (.pb or .pbtxt)"}),
    ("--labels", "model", "labels", {"metavar": "FILE", "help": "class names, line i = class i"}),
    ("--output", "run", "output", {"metavar": "FILE", "help": "results file (.csv, .jsonl or .parquet), or DIR/ for parts"}),
    ("--format", "run", "format", {"choices": ["csv", "jsonl", "parquet"], "help": "results format (default: from the extension)"}),
    ("--engine", "run", "engine", {"choices": ["local", "sequential", "compss"], "help": "where chunks run (default local)"}),
    ("--workers", "run", "workers", {"type": int, "metavar": "N", "help": "local worker processes (default: one per core)"}),
    ("--batch-size", "run", "batch_size", {"type": int, "metavar": "N", "help": "images per session run (default: from the model)"}),
    ("--chunk-size", "run", "chunk_size", {"type": int, "metavar": "N", "help": "images per task (default: from the workload)"}),
    ("--top-k", "run", "top_k", {"type": int, "metavar": "K", "help": "also write the K best classes and scores"}),
    ("--truth", "run", "truth", {"metavar": "CSV", "help": "ground truth (path,class_id) for accuracy"}),
    ("--truth-from", "run", "truth_from", {"choices": ["folders", "cls"], "help": "ground truth from <class>/ folder "
                                           "names, or from the tar samples' .cls members"}),
    ("--task-timeout", "run", "task_timeout", {"metavar": "SEC|auto|none", "help": "kill a chunk running longer (default auto: from finished chunks)"}),
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
