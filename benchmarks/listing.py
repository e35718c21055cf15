"""Listing at scale: ``--images DIR`` over a tree of many files, streamed into the plan.

Builds a tree under /tmp of ``--files`` empty ``.jpg`` files (1,000 per folder, the content is never
read), runs the master's planning (``inputs.make_plan``: the sorted recursive walk and the plan
file) in a child process, and reports its CPU time, wall time and peak RSS; then deletes the tree.
CPU time is the robust number on a shared machine.

``python -m benchmarks.listing [--files 1000000]`` prints a line and one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time


def build(root: str, files: int, per_folder: int = 1000) -> None:
    for d in range((files + per_folder - 1) // per_folder):
        folder = os.path.join(root, f"d{d // 100:03d}", f"s{d % 100:02d}")
        os.makedirs(folder, exist_ok=True)
        for i in range(min(per_folder, files - d * per_folder)):
            os.close(os.open(os.path.join(folder, f"img-{i:04d}.jpg"), os.O_CREAT | os.O_WRONLY, 0o644))


def measure(root: str, plan_path: str) -> dict:
    from compss_infer.run.inputs import make_plan
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    plan = make_plan(root, None, plan_path)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"files": plan.count, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "cpu_us_per_file": round(cpu / plan.count * 1e6, 2), "peak_rss_mb": round(r1.ru_maxrss / 1024, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return 0
    work = tempfile.mkdtemp(prefix="compss-infer-listing-", dir="/tmp")
    try:
        t0 = time.monotonic()
        build(os.path.join(work, "tree"), args.files)
        made = time.monotonic() - t0
        out = subprocess.run([sys.executable, "-m", "benchmarks.listing", "--measure", os.path.join(work, "tree"),
                              os.path.join(work, "plan.txt")], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["tree_build_s"] = round(made, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{row['files']:,} files listed in {row['wall_s']} s wall, {row['cpu_s']} s CPU "
          f"({row['cpu_us_per_file']} us/file), peak RSS {row['peak_rss_mb']} MB")
    print(json.dumps({"listing": row}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
