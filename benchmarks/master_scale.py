"""Master scale: what the master costs per image, part by part, and its memory, at millions of images.

The workers are real processes of the local engine, but their task is simulated: instead of
decoding and classifying, ``fake_classify`` answers each chunk with deterministic class ids and
scores (and an error row every 997 images).  So the workers cost almost nothing and the master's
own work (listing, planning, dispatch, result handling, the journal, final assembly, the summary)
is all there is to measure.  The run goes through ``compss_infer.run.runner.run`` unchanged, in this
process, so the master's CPU is this process's CPU: ``resource.getrusage(RUSAGE_SELF)`` (user +
system, all threads), which is robust on a shared machine where wall time is not.  Each part is
timed with ``time.thread_time`` around the functions that do it.

``python -m benchmarks.master_scale --counts 1000000,10000000`` prints a table and one JSON line.
``--real`` runs the real worker (a tiny 8x8 model on tiny PNGs) as a subprocess instead.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np

N_CLASSES = 10


def fake_warm_up(spec: Any) -> Any:
    """A ModelInfo as a small scores model would report it (no TensorFlow in the workers)."""
    from compss_infer.core.contracts import ModelInfo
    return ModelInfo(input_name="images:0", input_dtype="float32", input_shape=(None, 8, 8, 1), input_kind="image",
                     output_name="probs:0", output_dtype="float32", output_shape=(None, N_CLASSES),
                     output_kind="scores", fixed_batch=None, num_classes=N_CLASSES, height=8, width=8,
                     channels=1, node_count=3, function_count=0, batch_size=256)


def fake_classify(spec: Any, paths: Any) -> Any:
    """Deterministic answers from the path's length (the same for any chunking), no decoding."""
    from compss_infer.core.contracts import ChunkResult, TaskTiming
    n = len(paths)
    lens = np.fromiter((len(p) for p in paths), np.int64, n)
    ids = lens % N_CLASSES
    scores = ((lens % 1000) / 1000.0).astype(np.float32)
    errors = {i: "DecodeError: simulated" for i, p in enumerate(paths) if p.endswith("7.png")}
    for i in errors:
        ids[i], scores[i] = -1, np.nan
    now = time.time()
    return ChunkResult(class_ids=ids, scores=scores, errors=errors,
                       timing=TaskTiming("sim", os.getpid(), now, now, 0.0, 0.0, 0.0, "sim"))


class Parts:
    """Thread CPU time spent inside the wrapped functions (re-entrant calls counted once)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self._depth: dict[str, int] = {}

    def wrap(self, owner: Any, attr: str, part: str) -> None:
        fn = getattr(owner, attr)
        if getattr(fn, "_timed", False):
            return

        @functools.wraps(fn)
        def timed(*a: Any, **k: Any) -> Any:
            if self._depth.get(part):
                return fn(*a, **k)
            self._depth[part] = 1
            t = time.thread_time()
            try:
                out = fn(*a, **k)
                if hasattr(out, "__next__"):  # a generator: time its iteration too
                    return self._gen(out, part)
                return out
            finally:
                self.cpu[part] = self.cpu.get(part, 0.0) + time.thread_time() - t
                self._depth[part] = 0
        timed._timed = True  # type: ignore[attr-defined]
        setattr(owner, attr, timed)

    def _gen(self, it: Any, part: str) -> Any:
        while True:
            t = time.thread_time()
            try:
                item = next(it)
            except StopIteration:
                self.cpu[part] = self.cpu.get(part, 0.0) + time.thread_time() - t
                return
            self.cpu[part] = self.cpu.get(part, 0.0) + time.thread_time() - t
            yield item


def instrument(parts: Parts) -> None:
    """Time the master's parts where they live (whatever this version of the code calls them)."""
    from compss_infer.run import journal, runner, scheduler
    from compss_infer.engines import local
    targets: list[tuple[Any, str, str]] = [
        (runner, "make_plan", "listing + planning"),
        (runner, "iter_chunks", "chunking the plan"),
        (local.LocalEngine, "submit", "dispatch (send)"),
        (local.LocalEngine, "poll", "waiting + receiving results"),
        (scheduler.Scheduler, "_record", "result handling + journal"),
        (runner, "_finalize", "final assembly + summary + metrics"),
        (journal.Journal, "covered", "journal scan"),
    ]
    for owner, attr, part in targets:
        if hasattr(owner, attr):
            parts.wrap(owner, attr, part)


def make_list(path: str, n: int, pool: str) -> None:
    """``n`` lines naming files of the pool folder, written in blocks (not one Python object each)."""
    names = [f"{pool}/img-{i:05d}.png\n" for i in range(10000)]
    block = "".join(names).encode()
    with open(path, "wb") as fh:
        for _ in range(n // 10000):
            fh.write(block)
        fh.write("".join(names[: n % 10000]).encode())


def measured_run(runner: Any, cfg: Any) -> tuple[Any, float, float, float]:
    """(summary, master CPU s, wall s, peak RSS MB) of ``runner.run(cfg)`` in this process."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    summary = runner.run(cfg, started=t0)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return summary, cpu, wall, round(r1.ru_maxrss / 1024, 1)


def run_simulated(n: int, workdir: str, workers: int) -> dict[str, Any]:
    from compss_infer.run import runner
    from compss_infer.run.config import build_config
    lst = os.path.join(workdir, f"list-{n}.txt")
    make_list(lst, n, os.path.join(workdir, "pool"))
    model = os.path.join(workdir, "fake.pb")
    with open(model, "wb") as fh:
        fh.write(b"not read: the workers are simulated")
    out = os.path.join(workdir, f"out-{n}.csv")
    for p in (out, out + ".summary.json", out + ".tasks.csv"):
        if os.path.exists(p):
            os.unlink(p)
    shutil.rmtree(out + ".journal", ignore_errors=True)
    cfg = build_config(None, sets=[f"model.path={model}", f"run.image_list={lst}", f"run.output={out}",
                                   "run.progress=false", f"run.workers={workers}", "run.chunk_size=1024",
                                   "preprocess.mode=L", "preprocess.std=1"])
    runner.classify_chunk = fake_classify
    runner.warm_up = fake_warm_up
    parts = Parts()
    instrument(parts)
    summary, cpu, wall, peak_mb = measured_run(runner, cfg)
    size = os.path.getsize(out)
    for p in (out, out + ".summary.json", out + ".tasks.csv", lst):
        os.unlink(p)
    return {"images": n, "master_cpu_s": round(cpu, 3), "master_cpu_us_per_image": round(cpu / n * 1e6, 3),
            "peak_master_rss_mb": peak_mb, "wall_s": round(wall, 2),
            "results_bytes": size, "failed": summary.failed,
            "parts_us_per_image": {k: round(v / n * 1e6, 3) for k, v in sorted(parts.cpu.items(), key=lambda kv: -kv[1])}}


def run_one_child(n: int, workdir: str, workers: int) -> dict[str, Any]:
    """Each count in its own process, so the peak RSS of one does not hide another's."""
    import subprocess
    cmd = [sys.executable, "-m", "benchmarks.master_scale", "--one", str(n), "--workdir", workdir,
           "--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="1000000,10000000")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "compss-infer-master-scale"))
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    if args.one:
        print(json.dumps(run_simulated(args.one, args.workdir, args.workers)))
        return 0
    rows = []
    for n in (int(c) for c in args.counts.split(",")):
        row = run_one_child(n, args.workdir, args.workers)
        rows.append(row)
        print(f"{n:>11,} images: master CPU {row['master_cpu_s']:.2f} s = {row['master_cpu_us_per_image']} us/image, "
              f"peak master RSS {row['peak_master_rss_mb']:.0f} MB, wall {row['wall_s']:.1f} s", flush=True)
        for part, us in row["parts_us_per_image"].items():
            print(f"    {part:<40} {us:8.3f} us/image", flush=True)
    shutil.rmtree(args.workdir, ignore_errors=True)
    print(json.dumps({"master_scale": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
