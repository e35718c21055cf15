"""Memory per node of the COMPSs task design, measured on the fake COMPSs runtime (not a real COMPSs run).

The real PyCOMPSs 3.3 binding (master and piper worker) on the fake Java side of tests/compss_fake:
a 2-unit node (two executors, forked by the real piper worker, one per CPU computing unit) runs
chunks of the demo-sized quadrant model with COMPSS_INFER_CU=1 and =2.  Afterwards it counts the
task children holding a loaded model and sums their memory (RSS and USS, psutil), with the
executors' own.  Needs ../shared (the real PyCOMPSs 3.3 code).  Usage:
    .venv/bin/python scripts/bench_compss_memory.py [--chunks 8]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = r'''
import json, os, sys, tempfile
sys.path[:0] = [os.path.join(ROOT, "tests")]
import psutil
import tinymodels as tm
import compss_support
import inprocess
from compss_infer.run.config import ModelSpec, PreprocessSpec, SessionSpec
from compss_infer.core.contracts import WorkerSpec
from compss_infer.engines import make_engine
from compss_infer.worker import classify_chunk, warm_up
tmp = tempfile.mkdtemp()
model = tm.write_graph(tm.quadrant_graph(h=64, w=64), os.path.join(tmp, "q.pb"))
tm.make_images(os.path.join(tmp, "imgs"), 16 * CHUNKS, h=64, w=64)
paths = sorted(os.path.join(tmp, "imgs", f) for f in os.listdir(os.path.join(tmp, "imgs")))
runtime = inprocess.start(real_python=compss_support.REAL_PYCOMPSS, log_dir=os.path.join(tmp, "l"),
                          working_dir=os.path.join(tmp, "w"), cpus=2, log_level="debug",
                          pythonpath=os.pathsep.join([compss_support.SRC, compss_support.TESTS]))
spec = WorkerSpec(ModelSpec(path=model), PreprocessSpec(mode="L"), SessionSpec())
engine = make_engine("compss", workers=2)
engine.start(warm_up, spec)
engine.preflight()
for i in range(CHUNKS):
    engine.submit(i, classify_chunk, spec, paths[16 * i:16 * (i + 1)])
done = 0
while done < CHUNKS:
    done += sum(o.failure is None for o in engine.poll(60))
execs = [psutil.Process(p) for p in runtime.executor_pids()]
kids = [c for e in execs for c in e.children(recursive=True) if c.ppid() != e.pid]  # forked by a forkserver
servers = [c for e in execs for c in e.children() if c not in kids]
def mem(ps):
    return sum(p.memory_full_info().rss for p in ps) / 2**20, sum(p.memory_full_info().uss for p in ps) / 2**20
print(json.dumps({"cu": os.environ["COMPSS_INFER_CU"], "executors": len(execs), "children_with_model": len(kids),
                  "children_rss_mib": mem(kids)[0], "children_uss_mib": mem(kids)[1],
                  "forkservers_rss_mib": mem(servers)[0], "executors_rss_mib": mem(execs)[0]}))
engine.close()
inprocess.stop()
'''


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chunks", type=int, default=8)
    args = p.parse_args()
    results = []
    for cu in ("1", "2"):
        env = {**os.environ, "COMPSS_INFER_CU": cu, "TMPDIR": tempfile.mkdtemp()}
        code = f"ROOT = {ROOT!r}; CHUNKS = {args.chunks}\n" + CHILD
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
