"""Building a COMPSs job: runcompss's XML files, the node checks, ``enqueue_compss`` command lines.

TensorFlow-free and PyCOMPSs-free, so it runs on a login node.  The task environment it exports
(``COMPSS_INFER_CU``, ``COMPSS_INFER_TIME_OUT``) is defined in ``engines/compss_env.py``;
``python -m compss_infer.launch prepare ...`` (``commands/launch.py``) is what
``scripts/launch_runcompss.sh`` calls.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..core.errors import ConfigError, InputError
from ..core.specs import RunConfig
from ..engines.compss_env import CU_ENV, computing_units, cpus_per_task, task_env


SRC_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the folder holding compss_infer/
APP = os.path.join(SRC_DIR, "compss_infer", "compss_app.py")

# enqueue_compss / runcompss flags a user may add with --compss-flag (pycompss-notes.md).
EXTRA_FLAGS = frozenset({
    "queue", "reservation", "max_tasks_per_node", "node_memory", "worker_in_master_memory",
    "master_working_dir", "worker_working_dir", "project_name", "job_name", "python_interpreter",
    "log_level", "tracing", "graph", "log_dir", "cpu_affinity", "gpu_affinity", "env_script",
    "pythonpath",
})
EXTRA_SWITCHES = frozenset({"-d", "-t", "-g", "--tracing", "--graph", "--summary"})
OWN_FLAGS = {"sc_cfg": "--sc-cfg", "num_nodes": "--nodes", "exec_time": "--time", "qos": "--qos",
             "cpus_per_node": "--cpus-per-node", "gpus_per_node": "--gpus-per-node",
             "worker_in_master_cpus": "--cpus-per-node (with --nodes 1)", "lang": "(always python)"}


def check_inputs(cfg: RunConfig) -> None:
    """The cheap checks worth doing before a job waits in a queue (paths as the master will see them)."""
    from .checks import check_config
    check_config(cfg)
    r = cfg.run
    if r.shards:  # each shard must be there (listing is per shard: cheap)
        from .sources.shards import listed_shards
        base = r.shards_base or os.getcwd()
        missing = [x for x, found in listed_shards(r.shards, base) if not os.path.exists(os.path.join(base, found))]
        if missing:
            raise InputError(f"--shards {r.shards}: shard not found: {missing[0]}"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        return
    source = r.images or r.image_list
    if not os.path.exists(source):
        raise InputError(f"image source not found: {source}")


# --------------------------------------------------------------------------- runcompss (one node)

GPU_PROCESSOR = """
            <Processor Name="GPU">
                <Type>GPU</Type>
                <ComputingUnits>{gpus}</ComputingUnits>
            </Processor>"""


def render_templates(template_dir: str, out_dir: str, *, cpus: int, gpus: int, working_dir: str,
                     install_dir: str) -> tuple[str, str]:
    """Fill configs/compss/{project,resources}.xml for this node; returns their paths."""
    values = {"@CPUS@": str(cpus), "@GPU_PROCESSOR@": GPU_PROCESSOR.format(gpus=gpus) if gpus else "",
              "@WORKING_DIR@": working_dir, "@PYTHONPATH@": SRC_DIR, "@INSTALL_DIR@": install_dir}
    out = []
    for name in ("project.xml", "resources.xml"):
        with open(os.path.join(template_dir, name), encoding="utf-8") as fh:
            text = fh.read()
        for key, value in values.items():
            text = text.replace(key, value)
        left = re.findall(r"@[A-Z_]+@", text)
        if left:
            raise ConfigError(f"template {name}: unknown placeholder(s) {', '.join(sorted(set(left)))}")
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        out.append(path)
    return out[0], out[1]


def check_node(cfg: RunConfig, cpus: int, gpus: int, environ: Mapping[str, str] = os.environ) -> None:
    """Refuse a node on which the tasks could never run (COMPSs would leave them Blocked forever)."""
    need = cpus_per_task(cfg, environ)
    if need > cpus:
        raise ConfigError(f"each task needs {need} CPU computing units (session.intra_op_threads / {CU_ENV}) but "
                          f"the node declares {cpus}: COMPSs would never run them")
    if cfg.session.device == "gpu" and gpus < 1:
        raise ConfigError("session.device=gpu but the node declares no GPU (set COMPSS_INFER_GPUS)")


# --------------------------------------------------------------------------- enqueue_compss (SLURM)


@dataclass(frozen=True)
class SubmitOptions:
    """What ``compss-infer submit`` / ``scripts/submit_slurm.sh`` take besides the config."""

    nodes: int
    time: int  # minutes
    qos: str | None = None
    cpus_per_node: int | None = None
    gpus_per_node: int | None = None
    sc_cfg: str | None = None
    job_name: str = "compss-infer"
    compss_flags: tuple[str, ...] = ()


def _flag_name(flag: str) -> str:
    if flag in EXTRA_SWITCHES:
        return flag.lstrip("-")
    m = re.fullmatch(r"--([a-z_]+)=(.+)", flag, re.S)
    if not m:
        raise ConfigError(f"--compss-flag {flag!r}: expected --name=value (the form the COMPSs manual uses)")
    name = m.group(1)
    if name in OWN_FLAGS:
        raise ConfigError(f"--compss-flag {flag}: compss-infer sets --{name} itself; use {OWN_FLAGS[name]}")
    if name == "account":
        raise ConfigError("--account is not an enqueue_compss flag: use --compss-flag=--project_name=NAME "
                          "(it becomes SLURM -A only if the site cfg enables it)")
    if name not in EXTRA_FLAGS:
        raise ConfigError(f"--compss-flag {flag}: not an enqueue_compss/runcompss flag compss-infer knows "
                          f"({', '.join(sorted(EXTRA_FLAGS))})")
    return name


def task_slots(cfg: RunConfig, opts: SubmitOptions, environ: Mapping[str, str] = os.environ) -> int | None:
    """How many tasks COMPSs can run at once in the allocation (None when the CPUs per node are unknown)."""
    worker_nodes = opts.nodes - 1 if opts.nodes > 1 else 1  # node 1 is the master; alone, it is a worker too
    if cfg.session.device == "gpu":
        per_node = min(opts.cpus_per_node, opts.gpus_per_node or 0) if opts.cpus_per_node else opts.gpus_per_node
    else:
        per_node = opts.cpus_per_node // computing_units(cfg.session, environ) if opts.cpus_per_node else None
    return worker_nodes * per_node if per_node else None


def enqueue_command(cfg: RunConfig, config_path: str, opts: SubmitOptions,
                    environ: Mapping[str, str] = os.environ) -> tuple[dict[str, str], list[str]]:
    """(environment, argv) of the enqueue_compss call that runs ``config_path`` with the compss engine."""
    if opts.nodes < 1:
        raise ConfigError(f"--nodes must be >= 1, got {opts.nodes}")
    if opts.time < 1:
        raise ConfigError(f"--time must be >= 1 minute, got {opts.time}")
    if opts.cpus_per_node is not None and opts.cpus_per_node < 1:
        raise ConfigError(f"--cpus-per-node must be >= 1, got {opts.cpus_per_node}")
    if opts.gpus_per_node is not None and opts.gpus_per_node < 0:
        raise ConfigError(f"--gpus-per-node must be >= 0, got {opts.gpus_per_node}")
    env = task_env(cfg, environ)
    if cfg.session.device == "gpu" and not opts.gpus_per_node:
        raise ConfigError("session.device=gpu needs --gpus-per-node (GPU tasks on nodes without GPUs stay Blocked)")
    if opts.cpus_per_node is not None:
        check_node(cfg, opts.cpus_per_node, opts.gpus_per_node or 0, environ)
    if opts.nodes == 1 and not opts.cpus_per_node:
        raise ConfigError("--nodes 1: the only node is the COMPSs master, which runs tasks only with "
                          "--worker_in_master_cpus; give --cpus-per-node")
    extra = [(flag, _flag_name(flag)) for flag in opts.compss_flags]
    given = {name for _, name in extra}
    argv = ["enqueue_compss"]
    if opts.sc_cfg:
        argv.append(f"--sc_cfg={opts.sc_cfg}")
    argv += [f"--num_nodes={opts.nodes}", f"--exec_time={opts.time}"]
    if "job_name" not in given:
        argv.append(f"--job_name={opts.job_name}")
    if opts.qos:
        argv.append(f"--qos={opts.qos}")
    if opts.cpus_per_node:
        argv.append(f"--cpus_per_node={opts.cpus_per_node}")
    if opts.gpus_per_node:
        argv.append(f"--gpus_per_node={opts.gpus_per_node}")
    if opts.nodes == 1:
        argv.append(f"--worker_in_master_cpus={opts.cpus_per_node}")
    if "cpu_affinity" not in given:  # docs/cluster.md: the task's child would keep its first task's CPUs
        argv.append("--cpu_affinity=disabled")
    if "worker_working_dir" not in given:
        argv.append(f"--worker_working_dir={'local_disk' if cfg.run.stage_model else 'shared_disk'}")
    pythonpath = [SRC_DIR] + [f.split("=", 1)[1] for f, name in extra if name == "pythonpath"]
    argv += ["--lang=python", f"--pythonpath={':'.join(pythonpath)}"]
    argv += [f for f, name in extra if name != "pythonpath"]
    argv += [APP, os.path.abspath(config_path)]
    slots = task_slots(cfg, opts, environ)
    if slots and cfg.run.workers is None:
        argv.append(f"--workers={slots}")
    return env, argv


def format_command(env: Mapping[str, str], argv: Sequence[str]) -> str:
    """One shell line: ``VAR=value ... enqueue_compss --flag=value ...``."""
    return " ".join([shlex.quote(f"{k}={v}") for k, v in env.items()] + [shlex.quote(a) for a in argv])


# --------------------------------------------------------------------------- used by the launch script


def compss_config(config: str | None, flags: dict[str, Any], sets: list[str]) -> RunConfig:
    """The run config with the compss engine, as compss_app.py will build it."""
    from .config import build_config
    flags = {**flags, "run": {**flags.get("run", {}), "engine": "compss"}}
    cfg = build_config(config, flags, sets)
    if cfg.run.engine != "compss":
        raise ConfigError("run.engine: this launcher runs the compss engine (remove the run.engine override)")
    return cfg

