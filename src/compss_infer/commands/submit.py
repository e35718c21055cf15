"""``compss-infer submit CONFIG --nodes N --time MIN [...]``: run a config on SLURM through enqueue_compss.

Builds the enqueue_compss command (flags in the ``--flag=value`` form of the COMPSs manual) and runs
it, with the task environment exported.  ``--dry-run`` prints the exact command line instead.
Extra enqueue_compss/runcompss flags go through ``--compss-flag=--name=value`` (repeatable).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("submit", help="submit a run to SLURM with enqueue_compss", description=__doc__)
    p.add_argument("config", metavar="CONFIG.yaml", help="run config (the compss engine is used)")
    p.add_argument("--nodes", type=int, required=True, metavar="N", help="nodes; node 1 is the COMPSs master")
    p.add_argument("--time", type=int, required=True, metavar="MIN", help="wall-clock limit in minutes")
    p.add_argument("--qos", help="SLURM quality of service")
    p.add_argument("--cpus-per-node", type=int, metavar="C", help="CPU cores per node (sizes the task window)")
    p.add_argument("--gpus-per-node", type=int, metavar="G", help="GPUs per node (needed for session.device: gpu)")
    p.add_argument("--sc-cfg", metavar="FILE", help="enqueue_compss site cfg (pass it: the default may not be SLURM)")
    p.add_argument("--job-name", default="compss-infer", help="job name (default compss-infer)")
    p.add_argument("--compss-flag", dest="compss_flags", action="append", default=[], metavar="--NAME=VALUE",
                   help="one more enqueue_compss/runcompss flag, e.g. --compss-flag=--env_script=env.sh")
    p.add_argument("--dry-run", action="store_true", help="print the command line, do not submit")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..core.errors import ConfigError
    from ..run.launch import SubmitOptions, check_inputs, compss_config, enqueue_command, format_command

    cfg = compss_config(args.config, {}, [])
    check_inputs(cfg)
    opts = SubmitOptions(nodes=args.nodes, time=args.time, qos=args.qos, cpus_per_node=args.cpus_per_node,
                         gpus_per_node=args.gpus_per_node, sc_cfg=args.sc_cfg, job_name=args.job_name,
                         compss_flags=tuple(args.compss_flags))
    env, argv = enqueue_command(cfg, args.config, opts)
    if not args.sc_cfg:
        print("compss-infer: warning: no --sc-cfg; enqueue_compss uses its default site cfg, which may not be "
              "SLURM's", file=sys.stderr)
    if args.dry_run:
        print(format_command(env, argv))
        return 0
    if shutil.which(argv[0]) is None:
        raise ConfigError("enqueue_compss not found on PATH: load the COMPSs module (or --dry-run to see the command)")
    print(f"compss-infer: {format_command(env, argv)}", file=sys.stderr)
    return subprocess.run(argv, env={**os.environ, **env}).returncode
