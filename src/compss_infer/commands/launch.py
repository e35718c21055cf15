"""``python -m compss_infer.launch prepare ...``: what ``scripts/launch_runcompss.sh`` calls.

Checks a config for runcompss, writes project.xml/resources.xml and prints the exports the master needs.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Sequence

from ..core.errors import CompssInferError
from ..engines.compss_env import task_env
from ..run.launch import check_inputs, check_node, compss_config, render_templates


def _prepare(argv: Sequence[str]) -> int:
    from ..run.flags import add_run_arguments, flags_from_args
    p = argparse.ArgumentParser(prog="python -m compss_infer.launch prepare",
                                description="check a config for runcompss, write project.xml/resources.xml, "
                                            "print the exports the master needs")
    p.add_argument("--templates", required=True, help="folder with project.xml and resources.xml templates")
    p.add_argument("--out", required=True, help="folder for the generated XML files")
    p.add_argument("--cpus", type=int, required=True, help="CPU computing units of this node")
    p.add_argument("--gpus", type=int, default=0, help="GPUs of this node")
    p.add_argument("--install-dir", default=os.environ.get("COMPSS_HOME", "/opt/COMPSs/"))
    add_run_arguments(p)
    args = p.parse_args(argv)
    cfg = compss_config(args.config, flags_from_args(args), args.sets)
    check_inputs(cfg)
    check_node(cfg, args.cpus, args.gpus)
    env = task_env(cfg)
    working = os.path.join(os.path.abspath(args.out), "worker")
    os.makedirs(working, exist_ok=True)
    render_templates(args.templates, args.out, cpus=args.cpus, gpus=args.gpus, working_dir=working,
                     install_dir=args.install_dir)
    for key, value in env.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "prepare":
        print("usage: python -m compss_infer.launch prepare --templates DIR --out DIR --cpus N [--gpus G] "
              "CONFIG [run flags]", file=sys.stderr)
        return 2
    try:
        return _prepare(argv[1:])
    except CompssInferError as exc:
        print(f"compss-infer: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
