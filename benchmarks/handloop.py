"""Contender (b): a plain hand-written single-process TensorFlow loop.

What a competent user writes in an afternoon: the graph loaded once, Pillow decoding in a thread
pool with the next batch prefetched, batched sess.run with TensorFlow's default threading, a CSV
written as it goes.

Prints one JSON line: {"images": n, "first_result_s": ..., "done_s": ...}.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import time

T0 = time.monotonic()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("images")
    ap.add_argument("output")
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--mode", default="RGB")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--input", default="images:0")
    ap.add_argument("--output-tensor", default="probs:0")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()

    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from PIL import Image
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(a.images) for f in fs)
    gd = tf.compat.v1.GraphDef()
    with open(a.model, "rb") as fh:
        gd.ParseFromString(fh.read())
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    cfg = tf.compat.v1.ConfigProto()
    if a.device == "cpu":
        cfg.device_count["GPU"] = 0
    sess = tf.compat.v1.Session(graph=g, config=cfg)

    def load(p: str) -> np.ndarray:
        im = Image.open(p).convert(a.mode).resize((a.size, a.size))
        return np.asarray(im, np.float32).reshape(a.size, a.size, -1) / 255.0

    def load_batch(ps: list[str]) -> np.ndarray:
        return np.stack(list(pool.map(load, ps)))

    first = None
    with ThreadPoolExecutor(os.cpu_count()) as pool, ThreadPoolExecutor(1) as prefetch, \
            open(a.output, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "class_id", "score"])
        batches = [paths[i:i + a.batch] for i in range(0, len(paths), a.batch)]
        nxt = prefetch.submit(load_batch, batches[0])
        for i, ps in enumerate(batches):
            x = nxt.result()
            if i + 1 < len(batches):
                nxt = prefetch.submit(load_batch, batches[i + 1])
            probs = sess.run(a.output_tensor, {a.input: x})
            for p, row in zip(ps, probs):
                w.writerow([p, int(row.argmax()), f"{row.max():.6g}"])
            fh.flush()
            if first is None:
                first = time.monotonic() - T0
    print(json.dumps({"images": len(paths), "first_result_s": first, "done_s": time.monotonic() - T0}))


if __name__ == "__main__":
    main()
