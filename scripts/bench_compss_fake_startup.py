"""How long the fake COMPSs runtime (tests/compss_fake) takes to start, with the real PyCOMPSs binding.

Three figures, each the median of ``--runs`` tries, on a 2-CPU-unit node:
  * ``runcompss``: the whole tests/compss_fake/runcompss run of an app with one tiny task (python
    start-up, launch.py with its preload, the fake JVM, the real piper worker and its executors,
    the task, the stop);
  * ``jvm_start``: inside those runs, the fake JVM's start alone (piper worker up, every executor
    answering on its pipe: ``started`` in fake_compss.jsonl);
  * ``in_process``: tests/compss_fake/inprocess.start + stop in a fresh process (what the test
    session's shared runtime costs once).
Needs ../shared (the real PyCOMPSs 3.3 code).  Usage: .venv/bin/python scripts/bench_compss_fake_startup.py
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
sys.path.insert(0, TESTS)

APP = """import fake_tasks as T
from pycompss.api.api import compss_wait_on
if __name__ == "__main__":
    compss_wait_on(T.sleep(0))
"""
IN_PROCESS = """import sys, time
sys.path.insert(0, {tests!r})
import compss_support, inprocess
t0 = time.monotonic()
inprocess.start(real_python=compss_support.REAL_PYCOMPSS, log_dir={log!r}, working_dir={work!r}, cpus=2)
inprocess.stop()
print(time.monotonic() - t0)
"""


def main() -> int:
    from compss_support import RUNCOMPSS, subprocess_env
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    whole, jvm, inproc = [], [], []
    for _ in range(args.runs):
        home = tempfile.mkdtemp(prefix="fake-startup-")
        with open(os.path.join(home, "app.py"), "w") as fh:
            fh.write(APP)
        with open(os.path.join(home, "resources.xml"), "w") as fh:
            fh.write('<ResourcesList><ComputeNode Name="localhost"><Processor Name="P"><ComputingUnits>2'
                     '</ComputingUnits></Processor></ComputeNode></ResourcesList>')
        t0 = time.monotonic()
        subprocess.run([RUNCOMPSS, "--lang=python", "--resources=resources.xml", "app.py"], cwd=home, check=True,
                       env=subprocess_env(home), capture_output=True)
        whole.append(time.monotonic() - t0)
        with open(os.path.join(home, ".COMPSs", "app.py_01", "fake_compss.jsonl")) as fh:
            jvm.append(next(e["seconds"] for e in map(json.loads, fh) if e["event"] == "started"))
        code = IN_PROCESS.format(tests=TESTS, log=os.path.join(home, "l"), work=os.path.join(home, "w"))
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                             env=subprocess_env(home)).stdout
        inproc.append(float(out.strip().splitlines()[-1]))
    print(json.dumps({"runs": args.runs, "load_average": os.getloadavg()[0],
                      "runcompss_s": round(statistics.median(whole), 2), "jvm_start_s": round(statistics.median(jvm), 2),
                      "in_process_start_stop_s": round(statistics.median(inproc), 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
