"""Master scale: what the master costs per image, and its memory, at 10,000 and 200,000 images.

A tiny model (8x8 quadrant classifier) on a list of tiny PNGs (a pool of 64 files, listed over and
over), so the workers are fast and the master's planning, dispatch, journaling and ordered writing
dominate.  Measured: the master process's own CPU time per image, and its peak RSS (target: under
300 MB at 200,000 images, not growing with the images in flight).

`python -m benchmarks.master_scale [--counts 10000,200000]` prints a table and one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np
from PIL import Image

from . import harness


def tiny_model(path: str) -> None:
    from compss_infer.session import import_tf
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1], name="images")
        tf.nn.softmax(tf.reshape(tf.reduce_mean(x, axis=[1, 2]), [-1, 1]) * tf.ones([1, 4]), name="probs")
    with open(path, "wb") as fh:
        fh.write(g.as_graph_def().SerializeToString())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="10000,200000")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "compss-infer-master-scale"))
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    pool_dir = os.path.join(args.workdir, "pool")
    os.makedirs(pool_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(64):
        p = os.path.join(pool_dir, f"{i:02d}.png")
        Image.fromarray(rng.integers(0, 255, (8, 8), np.uint8), "L").save(p)
        files.append(p)
    model = os.path.join(args.workdir, "tiny.pb")
    tiny_model(model)
    rows = []
    for n in (int(c) for c in args.counts.split(",")):
        lst = os.path.join(args.workdir, f"list-{n}.txt")
        with open(lst, "w") as fh:
            for i in range(n):
                fh.write(files[i % len(files)] + "\n")
        out = os.path.join(args.workdir, f"out-{n}.csv")
        cmd = [sys.executable, "-m", "compss_infer", "run", "--model", model, "--image-list", lst, "--output", out,
               "--overwrite", "--no-progress", "-q", "--set", "preprocess.mode=L", "--workers", "2"]
        m = harness.run(cmd, sample_every=0.02)
        if m.returncode != 0:
            raise SystemExit(m.stderr_tail)
        summary = json.load(open(out + ".summary.json"))
        rows.append({"images": n, "wall_s": round(m.wall_s, 2), "master_cpu_s": m.master_cpu_s,
                     "master_cpu_us_per_image": round(m.master_cpu_s / n * 1e6, 1),
                     "peak_master_rss_mb": m.peak_master_rss_mb, "chunk_size": summary["chunk_size"],
                     "images_per_s": summary["images_per_s"]})
        print(f"{n:>8,} images: master CPU {m.master_cpu_s:.2f}s = {rows[-1]['master_cpu_us_per_image']} us/image, "
              f"peak master RSS {m.peak_master_rss_mb:.0f} MB, wall {m.wall_s:.1f}s, chunk {summary['chunk_size']}",
              flush=True)
    print(json.dumps({"master_scale": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
