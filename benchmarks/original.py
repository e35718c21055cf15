"""Contender (a): the original 2017 PyCOMPSs example's pattern, run as a process pool.

Each image is its own task: read the frozen graph, import it into a new graph, open a new
Session (1 inter / 1 intra thread, optimizer L0, as the example did), decode the one image, run,
close.  `procs` tasks run at once (one per core, as COMPSs executors would).  Only the first
`--limit` images are classified; the harness extrapolates the per-image cost to the whole set.

Prints one JSON line: {"images": n, "ready_s": ..., "first_result_s": ..., "done_s": ...}
(seconds since this process started).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor

T0 = time.monotonic()


def _init() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from compss_infer.model.session import import_tf
    import_tf()


def task(model: str, path: str, size: int, mode: str, inp: str, out: str) -> tuple[int, float]:
    """The whole original task body: load graph, open session, classify one image."""
    import numpy as np
    from PIL import Image
    from compss_infer.model.session import import_tf
    tf = import_tf()
    with open(model, "rb") as fh:
        gd = tf.compat.v1.GraphDef()
        gd.ParseFromString(fh.read())
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    cfg = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=1, intra_op_parallelism_threads=1)
    cfg.graph_options.optimizer_options.opt_level = tf.compat.v1.OptimizerOptions.L0
    x = np.asarray(Image.open(path).convert(mode).resize((size, size)), np.float32) / 255.0
    x = x.reshape(1, size, size, -1)
    with tf.compat.v1.Session(graph=g, config=cfg) as sess:
        probs = sess.run(out, {inp: x})[0]
    return int(probs.argmax()), float(probs.max())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("images")
    ap.add_argument("output")
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--mode", default="RGB")
    ap.add_argument("--procs", type=int, default=os.cpu_count())
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--input", default="images:0")
    ap.add_argument("--output-tensor", default="probs:0")
    a = ap.parse_args()
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(a.images) for f in fs)[: a.limit]
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(a.procs, mp_context=ctx, initializer=_init) as pool:
        list(pool.map(_noop, range(a.procs)))  # wait for every executor to import TensorFlow
        ready = time.monotonic() - T0
        futures = [pool.submit(task, a.model, p, a.size, a.mode, a.input, a.output_tensor) for p in paths]
        first = None
        with open(a.output, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "class_id", "score"])
            for p, f in zip(paths, futures):
                cid, score = f.result()
                w.writerow([p, cid, f"{score:.6g}"])
                if first is None:
                    first = time.monotonic() - T0
    print(json.dumps({"images": len(paths), "ready_s": ready, "first_result_s": first,
                      "done_s": time.monotonic() - T0}))


def _noop(_: int) -> None:
    return None


if __name__ == "__main__":
    main()
