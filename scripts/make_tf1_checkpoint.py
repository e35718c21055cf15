#!/usr/bin/env python3
"""Train a small TF1 CNN the way the TF1 recipes do and leave its Saver checkpoints in a folder.

For trying ``compss-infer freeze CKPT`` and ``run --model FOLDER`` on something bigger than the
test suite's graph.  Graph: images:0 [N,8,8,1] float 0..255 (scikit-learn's bundled 8x8 digits,
pixel * 16), two conv + ReLU layers, a max pool, a dense layer with dropout (``keep_prob:0``), a
dense softmax ``probs:0``; a ``labels`` placeholder, Adam, a global step, ``inputs``/``outputs``
collections.  Offline and seeded.  Prints the session's accuracy on the last 450 digits.

Usage: python scripts/make_tf1_checkpoint.py [--folder train] [--steps 200] [--saves 1]
"""
from __future__ import annotations

import argparse
import os

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", default="train")
    ap.add_argument("--steps", type=int, default=200, help="training steps between saves")
    ap.add_argument("--saves", type=int, default=1, help="checkpoints to write")
    args = ap.parse_args()
    from sklearn.datasets import load_digits
    from compss_infer.model.session import import_tf
    tf = import_tf()
    from tensorflow.python.util import deprecation
    d = load_digits()
    X, y = (d.images[..., None] * 16).astype(np.float32), d.target
    os.makedirs(args.folder, exist_ok=True)
    g = tf.Graph()
    with g.as_default(), deprecation.silence():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1], name="images")
        kp = tf.compat.v1.placeholder(tf.float32, [], name="keep_prob")
        lab = tf.compat.v1.placeholder(tf.int64, [None], name="labels")

        def var(name, shape):
            return tf.compat.v1.get_variable(name, shape, initializer=tf.compat.v1.glorot_uniform_initializer(seed=1))
        h = tf.nn.relu(tf.nn.conv2d(x / 255.0, var("c1/w", [3, 3, 1, 16]), 1, "SAME") + var("c1/b", [16]))
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        h = tf.nn.relu(tf.nn.conv2d(h, var("c2/w", [3, 3, 16, 32]), 1, "SAME") + var("c2/b", [32]))
        h = tf.reshape(h, [-1, 4 * 4 * 32])
        h = tf.compat.v1.nn.dropout(tf.nn.relu(tf.matmul(h, var("d1/w", [512, 64])) + var("d1/b", [64])), rate=1 - kp)
        logits = tf.matmul(h, var("d2/w", [64, 10])) + var("d2/b", [10])
        probs = tf.nn.softmax(logits, name="probs")
        loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(lab, logits)
        step = tf.compat.v1.train.get_or_create_global_step()
        train = tf.compat.v1.train.AdamOptimizer(1e-2).minimize(loss, global_step=step)
        tf.compat.v1.add_to_collection("inputs", x)
        tf.compat.v1.add_to_collection("outputs", probs)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as s:
            s.run(tf.compat.v1.global_variables_initializer())
            rng = np.random.default_rng(0)
            for _ in range(args.saves):
                for _ in range(args.steps):
                    idx = rng.integers(0, len(X) - 450, 64)
                    s.run(train, {x: X[idx], lab: y[idx], kp: 0.7})
                acc = (s.run(probs, {x: X[-450:], kp: 1.0}).argmax(1) == y[-450:]).mean()
                print(f"{saver.save(s, os.path.join(args.folder, 'model.ckpt'), global_step=step)}: "
                      f"accuracy {acc:.4f} on the last 450 digits")


if __name__ == "__main__":
    main()
