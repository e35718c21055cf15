"""Per-task fixed cost F and per-image cost c of the local engine, for the task-granularity rule.

Classifies the same images with chunk sizes 1..256 (tiny model and images, 2 workers) and fits
span(n) = A + B / n over the task timeline (first task start to last task end): with W workers and
I images, c = A W / I and F = B W / I.  F here is the local engine's (pipe round trip, pickling,
journaling); under COMPSs it is larger (docs/benchmarks.md).

`python -m benchmarks.granularity` prints the fit and one JSON line.
"""
from __future__ import annotations

import csv
import json
import os
import sys
import tempfile

import numpy as np

from . import harness



def tiny_model(path: str) -> None:
    """A model that costs almost nothing, so the per-task overhead F is what gets measured."""
    from compss_infer.model.session import import_tf
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1], name="images")
        tf.nn.softmax(tf.reshape(tf.reduce_mean(x, axis=[1, 2]), [-1, 1]) * tf.ones([1, 4]), name="probs")
    with open(path, "wb") as fh:
        fh.write(g.as_graph_def().SerializeToString())

def main() -> int:
    work = os.path.join(tempfile.gettempdir(), "compss-infer-granularity")
    os.makedirs(work, exist_ok=True)
    from PIL import Image
    rng = np.random.default_rng(0)
    images = 2048
    paths = []
    for i in range(images):
        p = os.path.join(work, f"{i:05d}.png")
        if not os.path.exists(p):
            Image.fromarray(rng.integers(0, 255, (8, 8), np.uint8), "L").save(p)
        paths.append(p)
    lst = os.path.join(work, "list.txt")
    with open(lst, "w") as fh:
        fh.write("\n".join(paths) + "\n")
    model = os.path.join(work, "tiny.pb")
    tiny_model(model)
    workers = 2
    rows = []
    for n in (1, 2, 4, 16, 64, 256):
        out = os.path.join(work, f"out-{n}.csv")
        spans = []
        for _ in range(3):
            m = harness.run([sys.executable, "-m", "compss_infer", "run", "--model", model, "--image-list", lst,
                             "--output", out, "--overwrite", "--no-progress", "-q", "--set", "preprocess.mode=L",
                             "--set", "preprocess.std=1",
                             "--workers", str(workers), "--chunk-size", str(n), "--batch-size", str(min(n, 64))])
            if m.returncode != 0:
                raise SystemExit(m.stderr_tail)
            tasks = list(csv.DictReader(open(out + ".tasks.csv")))
            spans.append(max(float(t["finished_s"]) for t in tasks) - min(float(t["started_s"]) for t in tasks))
        rows.append((n, float(np.median(spans))))
        print(f"chunk {n:>4}: {rows[-1][1]:.3f} s for {images} images", flush=True)
    x = np.array([1.0 / n for n, _ in rows])
    y = np.array([s for _, s in rows])
    b, a = np.polyfit(x, y, 1)
    c = a * workers / images
    f = b * workers / images
    print(f"per image c = {c * 1e6:.0f} us, per task F = {f * 1e3:.2f} ms "
          f"(2% overhead needs chunks >= {49 * f / c:.0f} images for this tiny model)")
    print(json.dumps({"chunk_spans": rows, "c_s": c, "F_s": f, "workers": workers, "images": images}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
