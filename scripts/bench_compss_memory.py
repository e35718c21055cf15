"""Memory per node of the COMPSs task design, on executors that run the REAL PyCOMPSs worker code.

Not a real COMPSs run: the executors are started here (tests/real_executor.py) and every task goes
through the real ``process_task``, with what the Java runtime decides chosen here the way it can
happen on a node: tasks go to the executors in rotation (any idle executor may get the next task),
and GPU tasks get the GPU that is free, so an executor's GPU changes from task to task.

Three node shapes, each run to the end, then every process of ours is measured (psutil RSS, USS =
its own pages, PSS = its fair share of shared pages):

* ``cpu-cu1``: 4 executors (4 CPU units), tasks of 1 unit, 4 at a time;
* ``cpu-cu2``: 4 executors, tasks of 2 units, 2 at a time (COMPSs runs 4 / 2), any executor;
* ``gpu``: 4 executors, 2 GPUs (a stand-in CUDA_VISIBLE_DEVICES: no GPU here), 2 tasks at a time,
  each executor on the other GPU than in the round before.

``--baseline SRC`` runs the same with another checkout's sources (e.g. the per-executor children
of main before issue 18) in the same invocation, for a ratio on the same machine.  It also counts
the processes of ours still running 5 s after the executors exited (orphans), and what was left in
the temporary folder.  Needs ../shared.
Usage: .venv/bin/python scripts/bench_compss_memory.py [--rounds 4] [--baseline /path/to/old/src]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests")]

SHAPES = {"cpu-cu1": (4, 1, 0, 4), "cpu-cu2": (4, 2, 0, 2), "gpu": (4, 1, 2, 2)}  # executors, units, GPUs, at once


def measure(shape: str, rounds: int, src: str | None) -> dict:
    import nodeprocs
    import tinymodels as tm
    from compss_infer.core.specs import ModelSpec, PreprocessSpec, SessionSpec
    from compss_infer.core.contracts import WorkerSpec
    from real_executor import Executor

    n_exec, units, gpus, at_once = SHAPES[shape]
    tmp = tempfile.mkdtemp(prefix="bench-mem-")
    os.environ["TMPDIR"] = tmp
    model = tm.write_graph(tm.quadrant_graph(h=64, w=64), os.path.join(tmp, "q.pb"))
    tm.make_images(os.path.join(tmp, "imgs"), 16, h=64, w=64)
    paths = sorted(os.path.join(tmp, "imgs", f) for f in os.listdir(os.path.join(tmp, "imgs")))
    spec = WorkerSpec(ModelSpec(path=model), PreprocessSpec(mode="L"), SessionSpec())
    executors = [Executor(os.path.join(tmp, f"e{i}"), optimize=False, src=src) for i in range(n_exec)]
    task = "_classify_task_gpu" if gpus else "_classify_task"
    workers, n = set(), 0
    t0 = time.monotonic()
    for _ in range(rounds):
        for start in range(0, n_exec, at_once):
            batch = []
            for k in range(at_once):
                ex = executors[(start + k) % n_exec]
                gpu = str((n + n // n_exec) % gpus) if gpus else None  # each round, the executors swap GPUs
                ex.submit(task, spec, paths, 600.0, 300.0, cpus=units, gpu=gpu)
                batch.append(ex)
                n += 1
            for ex in batch:
                value = ex.result(600)
                if getattr(value, "timing", None) is None:
                    raise SystemExit(f"{shape}: a task failed: {value!r}")
                workers.add(value.timing.pid)
    wall = time.monotonic() - t0
    kinds: dict[str, dict] = {}
    for p in nodeprocs.ours(tmp, exclude=tuple(e.pid for e in executors)):
        k = kinds.setdefault(nodeprocs.kind(p), {"n": 0, "rss_mib": 0.0, "uss_mib": 0.0, "pss_mib": 0.0})
        info = p.memory_full_info()
        k["n"] += 1
        for field in ("rss", "uss", "pss"):
            k[f"{field}_mib"] += getattr(info, field) / 2**20
    for ex in executors:
        ex.close()
    left = nodeprocs.strays(tmp, within=5.0)
    for p in nodeprocs.ours(tmp):  # leave nothing behind, whatever the design did
        p.kill()
    time.sleep(0.5)
    mine = {"q.pb", "imgs", *(f"e{i}" for i in range(n_exec))}
    files_left = sorted(f for f in os.listdir(tmp) if f not in mine)  # e.g. pymp-*: an executor never runs atexit
    shutil.rmtree(tmp, ignore_errors=True)
    total = {f: round(sum(k[f] for k in kinds.values()), 1) for f in ("rss_mib", "uss_mib", "pss_mib")}
    return {"shape": shape, "tasks": n, "models_loaded": len(workers), "wall_s": round(wall, 1),
            "processes": {k: {f: (round(v, 1) if isinstance(v, float) else v) for f, v in d.items()}
                          for k, d in sorted(kinds.items())},
            "total": total, "left_5s_after_executors_exited": len(left), "tmp_entries_left": files_left}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--baseline", help="src folder of another checkout, measured the same way")
    p.add_argument("--shapes", default=",".join(SHAPES))
    args = p.parse_args()
    for shape in args.shapes.split(","):
        for label, src in [("this", None)] + ([("baseline", args.baseline)] if args.baseline else []):
            print(json.dumps({"code": label, **measure(shape, args.rounds, src)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
