"""Files against tar shards, in one run: the master's cost, and a real workload's speed.

Part 1, the master (simulated tasks, as ``benchmarks.master_scale``): the same N images as a list of
files and as tar shards of N/1,000 images (and 10,000,000 images in 1,000 shards of 10,000).  The
workers are real local-engine processes whose tasks are simulated: a shard's index and a chunk's answers
are made up from the sample numbers (no tar is read, no image decoded), so the master's own work
is all there is: planning (files: read and hash the list; shards: check each shard, then the index
tasks' results), dispatch, results, the journal, the results file.  Master CPU is
``getrusage(RUSAGE_SELF)`` of a child process per case (robust on a shared machine), peak RSS its
``ru_maxrss``, planning its wall time up to the first dispatched chunk.

Part 2, a real workload: MobileNetV2 (W2's frozen graph) on JPEGs cut from the two real photos
scikit-learn ships, written once as files and once as tar shards; ``compss-infer run`` with its
defaults on each, interleaved, img/s after the first result (the steady rate: both pay the same start-up).

``python -m benchmarks.shards [--images 1000000] [--real 1000]`` prints tables and one JSON line.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any

import numpy as np

from . import master_scale
from .master_scale import Parts, fake_warm_up, instrument, make_list


def fake_index(path: str, planned_size: int | None = None) -> Any:
    """A shard of ``int(<name>.samples)`` samples 1 KiB apart, as a worker would index it (nothing read)."""
    from compss_infer.images.shards import ShardIndex
    n = int(os.path.basename(path).split(".")[1])
    st = os.stat(path)
    return ShardIndex(path, st.st_size, st.st_mtime_ns, np.arange(n + 1, dtype=np.int64) * 1024, [])


def fake_classify(spec: Any, paths: Any) -> Any:
    """``master_scale.fake_classify`` (answers from the name's length), for shard slices too: their
    samples are named from their numbers (no tar is read, no image decoded)."""
    from compss_infer.images.shards import SHARD_REFS, ShardSlice
    if not isinstance(paths, SHARD_REFS):
        return master_scale.fake_classify(spec, paths)
    parts = [paths] if isinstance(paths, ShardSlice) else paths.parts
    listed = [f"{p.listed_shard}/{p.first + i:06d}.png" for p in parts for i in range(len(p))]
    result = master_scale.fake_classify(spec, listed)
    result.listed = listed
    return result


def make_shards(folder: str, shards: int, per_shard: int) -> str:
    """``shards`` small placeholder tar files named ``NNNNN.<per_shard>.tar`` (their size says nothing)."""
    os.makedirs(folder, exist_ok=True)
    block = bytes(1024)
    for k in range(shards):
        with open(os.path.join(folder, f"{k:05d}.{per_shard}.tar"), "wb") as fh:
            fh.write(block)
    return folder


def run_simulated(kind: str, n: int, shards: int, workdir: str, workers: int) -> dict[str, Any]:
    from compss_infer.run import runner
    from compss_infer.run.config import build_config
    from compss_infer.run.sources import shards as source
    model = os.path.join(workdir, "fake.pb")
    with open(model, "wb") as fh:
        fh.write(b"not read: the workers are simulated")
    out = os.path.join(workdir, f"out-{kind}-{n}.csv")
    if kind == "files":
        inp = os.path.join(workdir, f"list-{n}.txt")
        make_list(inp, n, os.path.join(workdir, "pool"))
        given = [f"run.image_list={inp}"]
    else:
        inp = make_shards(os.path.join(workdir, f"shards-{n}"), shards, n // shards)
        given = [f"run.shards={inp}"]
    cfg = build_config(None, sets=[f"model.path={model}", f"run.output={out}", "run.progress=false",
                                   f"run.workers={workers}", "preprocess.mode=L", "preprocess.std=1", *given])  # default chunks
    runner.classify_chunk = fake_classify
    runner.warm_up = fake_warm_up
    source.index_shard = fake_index
    parts = Parts()
    timers = not os.environ.get("BENCH_NO_PARTS")  # the per-part timers cost the master a little CPU
    if timers:
        instrument(parts)
    walls: dict[str, float] = {}

    def walled(fn: Any) -> Any:
        def timed(*a: Any, **k: Any) -> Any:
            t = time.monotonic()
            try:
                return fn(*a, **k)
            finally:
                walls[fn.__name__] = walls.get(fn.__name__, 0.0) + time.monotonic() - t
        return timed
    runner.plan_input = walled(runner.plan_input)
    runner.index_all = walled(runner.index_all)
    if timers:
        parts.wrap(runner, "plan_input", "listing + planning")
        parts.wrap(runner, "index_all", "shard index (results of the index tasks)")
        parts.wrap(runner, "iter_shard_chunks", "chunking the plan")
    first: list[float] = []
    submit = runner.Scheduler._submit

    def timed_submit(self: Any, task: Any) -> None:
        if not first:
            first.append(time.monotonic())
        submit(self, task)
    runner.Scheduler._submit = timed_submit
    t0 = time.monotonic()
    summary, cpu, wall, peak_mb = master_scale.measured_run(runner, cfg)
    size = os.path.getsize(out)
    for p in (out, out + ".summary.json", out + ".tasks.csv"):
        os.unlink(p)
    if kind == "files":
        os.unlink(inp)
    else:
        shutil.rmtree(inp)
    return {"input": kind, "images": n, "shards": shards if kind == "shards" else None,
            "master_cpu_s": round(cpu, 3), "master_cpu_us_per_image": round(cpu / n * 1e6, 3),
            "planning_s": round(sum(walls.values()), 3), "first_chunk_s": round(first[0] - t0, 2) if first else None,
            "peak_master_rss_mb": peak_mb, "wall_s": round(wall, 2), "results_bytes": size,
            "failed": summary.failed,
            "parts_us_per_image": {k: round(v / n * 1e6, 3) for k, v in sorted(parts.cpu.items(), key=lambda kv: -kv[1])}}


def child(kind: str, n: int, shards: int, workdir: str, workers: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.shards", "--one", kind, str(n), str(shards), "--workdir", workdir,
           "--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- part 2: a real workload

def real_images(n: int, size: int = 224, seed: int = 0) -> list[bytes]:
    """``n`` JPEGs: random crops (rescaled, random quality) of scikit-learn's two sample photos."""
    from PIL import Image
    from sklearn.datasets import load_sample_images
    photos = [Image.fromarray(a) for a in load_sample_images().images]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        im = photos[i % len(photos)]
        side = int(rng.integers(size // 2, min(im.size)))
        x, y = int(rng.integers(0, im.size[0] - side)), int(rng.integers(0, im.size[1] - side))
        crop = im.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=int(rng.integers(70, 95)))
        out.append(buf.getvalue())
    return out


def real_workload(n: int, per_shard: int, reps: int, workdir: str) -> dict[str, Any]:
    from . import workloads
    wl = workloads.build("W2", os.path.join(tempfile.gettempdir(), "compss-infer-bench"), count=16)  # its model
    files = os.path.join(workdir, "real-files")
    shards = os.path.join(workdir, "real-shards")
    os.makedirs(files, exist_ok=True)
    os.makedirs(shards, exist_ok=True)
    images = real_images(n)
    for k in range(0, n, per_shard):
        with tarfile.open(os.path.join(shards, f"{k // per_shard:05d}.tar"), "w") as tf:
            for i in range(k, min(n, k + per_shard)):
                with open(os.path.join(files, f"{i:06d}.jpg"), "wb") as fh:
                    fh.write(images[i])
                for name, data in ((f"{i:06d}.jpg", images[i]), (f"{i:06d}.cls", str(i % 10).encode())):
                    ti = tarfile.TarInfo(name)
                    ti.size = len(data)
                    tf.addfile(ti, io.BytesIO(data))
    rates: dict[str, list[float]] = {"files": [], "shards": []}
    order = ["files", "shards"]
    for rep in range(reps):
        for kind in (order if rep % 2 == 0 else order[::-1]):
            out = os.path.join(workdir, f"real-{kind}.csv")
            given = ["--images", files] if kind == "files" else ["--shards", shards]
            cmd = [sys.executable, "-m", "compss_infer", "run", "--model", wl.model, *given, "--output", out,
                   "--overwrite", "--no-progress", "-q"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-3000:])
            summary = json.load(open(out + ".summary.json"))
            rates[kind].append(summary["after_first_images_per_s"] or summary["images_per_s"])
            print(f"  real {kind}: {rates[kind][-1]:.1f} img/s after the first result", flush=True)
    med = {k: float(np.median(v)) for k, v in rates.items()}
    return {"images": n, "per_shard": per_shard, "model": "MobileNetV2 (W2, 224x224, fp32)", "reps": reps,
            "after_first_images_per_s": rates, "median": med, "shards_over_files": round(med["shards"] / med["files"], 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--big", type=int, default=10_000_000,
                    help="shards-only runs: this many images in 1,000 shards and in 10,000 shards")
    ap.add_argument("--real", type=int, default=1000, help="images of the real workload (0: skip it)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "compss-infer-shards-bench"))
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    if args.one:
        kind, n, shards = args.one
        print(json.dumps(run_simulated(kind, int(n), int(shards), args.workdir, args.workers)))
        return 0
    rows = []
    cases = [("files", args.images, 0), ("shards", args.images, 1000)]
    if args.big:
        cases += [("shards", args.big, 1000), ("shards", args.big, 10000)]
    for kind, n, shards in cases:
        row = child(kind, n, shards, args.workdir, args.workers)
        rows.append(row)
        what = f"{n:,} images as {'files' if kind == 'files' else f'{shards:,} shards'}"
        print(f"{what}: master CPU {row['master_cpu_us_per_image']} us/image ({row['master_cpu_s']} s), planning "
              f"{row['planning_s']} s, peak RSS {row['peak_master_rss_mb']:.0f} MB, wall {row['wall_s']} s", flush=True)
        for part, us in row["parts_us_per_image"].items():
            print(f"    {part:<45} {us:8.3f} us/image", flush=True)
    real = real_workload(args.real, max(1, args.real // 10), args.reps, args.workdir) if args.real else None
    if real:
        print(f"real workload, {real['images']} JPEGs, {real['model']}: files {real['median']['files']:.1f}, "
              f"shards {real['median']['shards']:.1f} img/s after the first result (shards/files "
              f"{real['shards_over_files']})")
    shutil.rmtree(args.workdir, ignore_errors=True)
    print(json.dumps({"shards_benchmark": {"simulated": rows, "real": real}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
