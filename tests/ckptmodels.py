"""A tiny TF1 training graph saved with tf.compat.v1.train.Saver, as the TF1 recipes leave them.

The quadrant classifier (tinymodels) with a trainable dense layer on top: features = quadrant
means / 255 * SCALE, logits = dropout(features, keep_prob) @ W + b, probs = softmax(logits).  It
has a ``keep_prob`` placeholder, a training-only ``labels`` placeholder, an optimizer, a global
step, and ``inputs``/``outputs`` collections.  ``expected`` computes its answer with numpy from the
saved W and b, so tests check real outputs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

import tinymodels as tm
from compss_infer.model.session import import_tf


@dataclass
class Saved:
    prefix: str
    W: np.ndarray
    b: np.ndarray


def save_checkpoint(folder: str, *, steps: int = 5, negate: bool = False, seed: int = 0, start_step: int = 0,
                    collections: bool = True, signature: bool = False, extra_var: bool = False) -> Saved:
    """Build, train ``steps`` steps, optionally negate W and b (an "inverted" classifier), save."""
    tf = import_tf()
    from tensorflow.python.util import deprecation
    os.makedirs(folder, exist_ok=True)
    g = tf.Graph()
    with g.as_default(), deprecation.silence():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1], name="images")
        kp = tf.compat.v1.placeholder(tf.float32, [], name="keep_prob")
        labels = tf.compat.v1.placeholder(tf.int64, [None], name="labels")
        feats = tm._quadrant_logits(tf, x, 8, 8)
        rng = np.random.default_rng(seed)
        w0 = (np.eye(4) + rng.normal(0, 0.1, (4, 4))).astype(np.float32)
        W = tf.compat.v1.get_variable("dense/W", initializer=tf.constant(w0))
        b = tf.compat.v1.get_variable("dense/b", initializer=tf.zeros([4]))
        logits = tf.matmul(tf.compat.v1.nn.dropout(feats, rate=1.0 - kp), W) + b
        if extra_var:  # a variable the other checkpoints do not have
            logits = logits + 0.0 * tf.compat.v1.get_variable("dense/extra", initializer=tf.zeros([4]))
        probs = tf.nn.softmax(logits, name="probs")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        step = tf.compat.v1.train.get_or_create_global_step()
        train = tf.compat.v1.train.GradientDescentOptimizer(0.05).minimize(loss, global_step=step)
        if collections:
            tf.compat.v1.add_to_collection("inputs", x)
            tf.compat.v1.add_to_collection("outputs", probs)
        saver = tf.compat.v1.train.Saver(max_to_keep=10)
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(step.assign(start_step))
            for _ in range(steps):
                q = rng.integers(0, 4, 16)
                imgs = np.stack([np.asarray(tm.quadrant_image(int(c), seed=int(rng.integers(1 << 30))), np.float32)
                                 for c in q])[..., None]
                sess.run(train, {x: imgs, labels: q, kp: 0.5})
            if negate:
                sess.run([W.assign(-W), b.assign(-b)])
            prefix = saver.save(sess, os.path.join(folder, "model.ckpt"), global_step=step)
            if signature:
                sig = tf.compat.v1.saved_model.predict_signature_def({"pixels": x}, {"scores": probs})
                meta = tf.compat.v1.train.export_meta_graph(graph=g)
                meta.signature_def["serving_default"].CopyFrom(sig)
                with open(prefix + ".meta", "wb") as fh:
                    fh.write(meta.SerializeToString())
            wv, bv = sess.run([W, b])
    return Saved(prefix, wv, bv)


def expected(path: str, saved: Saved) -> np.ndarray:
    """The graph's softmax for an 8x8 image file (keep_prob 1), computed with numpy."""
    arr = np.asarray(Image.open(path).convert("L"), np.float32)
    means = np.array([arr[:4, :4].mean(), arr[:4, 4:].mean(), arr[4:, :4].mean(), arr[4:, 4:].mean()])
    z = (means / 255.0 * tm.SCALE) @ saved.W + saved.b
    e = np.exp(z - z.max())
    return e / e.sum()


def rewrite_meta(prefix: str, edit: Any) -> None:
    """Apply ``edit(meta_graph_def)`` to a checkpoint's .meta file (for broken-checkpoint tests)."""
    from tensorflow.core.protobuf import meta_graph_pb2
    meta = meta_graph_pb2.MetaGraphDef()
    with open(prefix + ".meta", "rb") as fh:
        meta.ParseFromString(fh.read())
    edit(meta)
    with open(prefix + ".meta", "wb") as fh:
        fh.write(meta.SerializeToString())
