"""Tiny frozen graphs and images for tests, built on the fly in milliseconds.

The "quadrant" classifier: class = the brightest quadrant of the image (0 top-left, 1 top-right,
2 bottom-left, 3 bottom-right); scores = softmax(quadrant means / 255 * scale).  Its answer for any
image can be computed with numpy (``expected``), so tests check real outputs, not hard-coded ones.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

from compss_infer.model.session import import_tf

SCALE = 20.0


def _quadrant_logits(tf: Any, x: Any, h: int, w: int) -> Any:
    """(n, h, w, c) float 0..255 -> (n, 4) logits; the same math as ``expected_scores``."""
    g = tf.reduce_mean(x, axis=3)
    h2, w2 = h // 2, w // 2
    quads = [g[:, :h2, :w2], g[:, :h2, w2:], g[:, h2:, :w2], g[:, h2:, w2:]]
    means = tf.stack([tf.reduce_mean(q, axis=[1, 2]) for q in quads], axis=1)
    return means / 255.0 * SCALE


def quadrant_graph(h: int = 8, w: int = 8, c: int = 1, batch: int | None = None, *,
                   keep_prob: bool = False, int_output: bool = False, dtype: str = "float32",
                   input_name: str = "images", extra_output: bool = False, flat: bool = False,
                   unbatched: bool = False, normalized: bool = False) -> Any:
    """A GraphDef for the quadrant classifier.

    normalized: the graph expects (x / 255) inputs (use preprocess.std=255) and rescales inside.
    """
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        tdt = getattr(tf, dtype)
        if flat:
            x = tf.compat.v1.placeholder(tdt, [batch, h * w * c], name=input_name)
            xf = tf.reshape(tf.cast(x, tf.float32), [-1, h, w, c])
        elif unbatched:
            x = tf.compat.v1.placeholder(tdt, [h, w, c], name=input_name)
            xf = tf.expand_dims(tf.cast(x, tf.float32), 0)
        else:
            x = tf.compat.v1.placeholder(tdt, [batch, h, w, c], name=input_name)
            xf = tf.cast(x, tf.float32)
        if normalized:
            xf = xf * 255.0
        logits = _quadrant_logits(tf, xf, h, w)
        if keep_prob:
            kp = tf.compat.v1.placeholder(tf.float32, [], name="keep_prob")
            logits = logits * kp  # keep_prob=1.0 keeps the answer; 0.0 would flatten it
        probs = tf.nn.softmax(logits, name="probs")
        if unbatched:
            probs = tf.squeeze(probs, 0, name="probs_one")
        if int_output:
            tf.argmax(probs, axis=-1, output_type=tf.int64, name="class_id")
        if extra_output:
            tf.identity(logits, name="logits")
    return g.as_graph_def()


def hostile_graph(h: int = 8, w: int = 8) -> Any:
    """The quadrant classifier (x / 255 input) through one quantization-hostile layer.

    A 1x1 convolution spreads the image into 4 channels, one of them 1000 times the others (an outlier
    channel); the next 1x1 convolution adds channel 0 and one millionth of the outlier back, so in
    float the answer is the quadrant classifier's (x 1.001).  In int8 the spread tensor gets one
    per-tensor scale for all channels, wide enough for the outlier, and channel 0 rounds to nothing:
    the answers collapse unless both convolutions stay in float.
    """
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, h, w, 1], name="images")
        w1 = np.array([1.0, 0.5, 0.25, 1000.0], np.float32).reshape(1, 1, 1, 4)
        spread = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"), name="spread")
        w2 = np.array([1.0, 0.0, 0.0, 1e-6], np.float32).reshape(1, 1, 4, 1)
        mixed = tf.nn.conv2d(spread, w2, 1, "SAME", name="mix")
        tf.nn.softmax(_quadrant_logits(tf, mixed * 255.0, h, w), name="probs")
    return g.as_graph_def()


def inverted_graph(h: int = 8, w: int = 8) -> Any:
    """Same tensors as the quadrant classifier, opposite answer: the darkest quadrant wins."""
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, h, w, 1], name="images")
        tf.nn.softmax(-_quadrant_logits(tf, x, h, w), name="probs")
    return g.as_graph_def()


def path_graph(h: int = 8, w: int = 8, c: int = 1, batched: bool = False) -> Any:
    """The quadrant classifier with an image-path input (decoding inside the graph, like the 2017 example)."""
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        def load(p: Any) -> Any:
            img = tf.io.decode_image(tf.io.read_file(p), channels=c, expand_animations=False)
            img = tf.image.resize(tf.cast(img, tf.float32), [h, w], method="bilinear", antialias=True)
            return img
        if batched:
            paths = tf.compat.v1.placeholder(tf.string, [None], name="image_paths")
            x = tf.map_fn(load, paths, fn_output_signature=tf.float32)
        else:
            p = tf.compat.v1.placeholder(tf.string, [], name="image_path")
            x = tf.expand_dims(load(p), 0)
        probs = tf.nn.softmax(_quadrant_logits(tf, x, h, w), name="probs")
        if not batched:
            tf.squeeze(probs, 0, name="probs_one")
    return g.as_graph_def()


def write_graph(gd: Any, path: str) -> str:
    """Binary (.pb) or text (.pbtxt) by extension; returns the path."""
    from compss_infer.model.freeze import write_graph_def
    write_graph_def(gd, path)
    return path


def quadrant_image(quadrant: int, h: int = 8, w: int = 8, mode: str = "L", seed: int = 0,
                   bright: int = 220, dim: int = 40) -> Image.Image:
    """An image whose brightest quadrant is ``quadrant`` (with a little noise)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, dim, size=(h, w), dtype=np.int64)
    h2, w2 = h // 2, w // 2
    r, c = divmod(quadrant, 2)
    arr[r * h2:(r + 1) * h2, c * w2:(c + 1) * w2] += bright - dim
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    im = Image.fromarray(arr, "L")
    return im.convert(mode) if mode != "L" else im


def make_images(folder: str, n: int, h: int = 8, w: int = 8, mode: str = "L", ext: str = "png",
                nested: bool = False) -> list[tuple[str, int]]:
    """``n`` quadrant images under ``folder``; returns (relative path, true quadrant) in sorted order."""
    out = []
    for i in range(n):
        q = i % 4
        rel = f"q{q}/img_{i:05d}.{ext}" if nested else f"img_{i:05d}.{ext}"
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        quadrant_image(q, h, w, mode, seed=i).save(path)
        out.append((rel, q))
    return sorted(out)


def expected_scores(path: str, h: int = 8, w: int = 8) -> np.ndarray:
    """The quadrant classifier's softmax for an image file, computed with numpy."""
    arr = np.asarray(Image.open(path).convert("L").resize((w, h), Image.Resampling.BILINEAR), np.float32)
    h2, w2 = h // 2, w // 2
    means = np.array([arr[:h2, :w2].mean(), arr[:h2, w2:].mean(), arr[h2:, :w2].mean(), arr[h2:, w2:].mean()])
    z = means / 255.0 * SCALE
    e = np.exp(z - z.max())
    return e / e.sum()


def odd_output_graph(kind: str, h: int = 8, w: int = 8, batch: int | None = None) -> Any:
    """The quadrant classifier with an output that is wrong in one way (the issue-10 graphs).

    batch_mean: one row for the whole batch; doubled: two rows per image; first_two: only the first
    two rows (right at batch 1 and 2, wrong above); scalar: one number per batch; nan_q3: NaN scores
    for images whose brightest quadrant is 3 (the others are right).
    """
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [batch, h, w, 1], name="images")
        probs = tf.nn.softmax(_quadrant_logits(tf, x, h, w))
        if kind == "batch_mean":
            tf.reduce_mean(probs, axis=0, keepdims=True, name="out")
        elif kind == "doubled":
            tf.concat([probs, probs], axis=0, name="out")
        elif kind == "first_two":
            tf.identity(probs[:2], name="out")
        elif kind == "scalar":
            tf.reduce_mean(probs, name="out")
        elif kind == "nan_q3":
            is_q3 = tf.cast(tf.equal(tf.argmax(probs, axis=1), 3), tf.float32)[:, None]
            tf.multiply(probs, 1.0 + 0.0 * tf.math.log(0.5 - is_q3), name="out")  # log(-0.5) = NaN
        else:
            raise ValueError(kind)
    return g.as_graph_def()
