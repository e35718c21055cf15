"""Checking that a rewritten graph still computes what its source did, on a random batch.

``freeze`` compares the frozen graph against the Keras/SavedModel source, ``optimize`` the
optimized graph against the original.  Both feed the same random inputs and refuse to write a
result whose outputs differ by more than a tolerance relative to the outputs' scale.
Worker-side: imports TensorFlow.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..core.errors import ModelError
from .session import import_tf

VERIFY_BATCH = 4
FREE_DIM = 16  # stands for an unknown height/width/feature size in a random input


@dataclass(frozen=True)
class Check:
    """The outcome of one comparison."""

    batch: int
    max_abs_diff: float
    scale: float  # max |reference output|
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance * max(1.0, self.scale)

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "MISMATCH"
        return (f"max |difference| {self.max_abs_diff:.3g} on a random batch of {self.batch} "
                f"(tolerance {self.tolerance:g} x max(1, |output| {self.scale:.3g})): {verdict}")


def compare(reference: np.ndarray, candidate: np.ndarray, batch: int, tolerance: float) -> Check:
    """Max absolute difference (NaN where both are NaN counts as equal; a shape change is infinite)."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape:
        return Check(batch, float("inf"), 0.0, tolerance)
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    worst = float(np.nan_to_num(diff, nan=np.inf).max()) if diff.size else 0.0
    scale = float(np.nanmax(np.abs(a))) if a.size and not np.isnan(a).all() else 0.0
    return Check(batch, worst, scale, tolerance)


def random_value(dtype: str, shape: Sequence[int | None] | None, batch: int, rng: np.random.Generator,
                 tmpdir: str | None = None) -> Any:
    """A random input for a placeholder: the batch axis gets ``batch``, other unknown axes FREE_DIM.

    Floats are uniform in [0, 1), uint8 pixels uniform in 0..255, other integers and bools zero,
    strings paths of small random PNG files written under ``tmpdir`` (for image-path graphs).
    """
    if shape is None:
        raise ModelError(f"cannot make a test input for a {dtype} placeholder of unknown rank")
    dims = [batch if (i == 0 and len(shape) != 3 and d is None) else (d if d is not None else FREE_DIM)
            for i, d in enumerate(shape)]
    if dtype == "string":
        if tmpdir is None:
            raise ModelError("an image-path input needs test images")
        return _random_paths(dims, rng, tmpdir)
    np_dtype = np.dtype(import_tf().as_dtype(dtype).as_numpy_dtype)
    if np_dtype == np.uint8:
        return rng.integers(0, 256, size=dims, dtype=np.uint8)
    if np.issubdtype(np_dtype, np.floating):
        return rng.random(dims).astype(np_dtype)
    return np.zeros(dims, dtype=np_dtype)


def _random_paths(dims: list[int], rng: np.random.Generator, tmpdir: str) -> Any:
    from PIL import Image
    count = int(np.prod(dims)) if dims else 1
    paths = []
    for i in range(count):
        path = os.path.join(tmpdir, f"verify_{i}.png")
        Image.fromarray(rng.integers(0, 256, size=(FREE_DIM, FREE_DIM, 3), dtype=np.uint8), "RGB").save(path)
        paths.append(os.fsencode(path))
    return np.array(paths, dtype=object).reshape(dims) if dims else paths[0]


def run_graph(gd: Any, feeds: dict[str, Any], fetch: str) -> np.ndarray:
    """Import ``gd`` into a fresh graph and run ``fetch`` once (CPU, default options)."""
    tf = import_tf()
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    cfg = tf.compat.v1.ConfigProto(device_count={"GPU": 0})
    try:
        with tf.compat.v1.Session(graph=graph, config=cfg) as sess:
            return np.asarray(sess.run(fetch, feed_dict=feeds))
    except Exception as exc:
        first = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).strip().splitlines()
        raise ModelError(f"the graph fails on a random test batch: {first[0] if first else type(exc).__name__}") from None


class TempImages:
    """A temporary folder for test images (path-input graphs); a context manager."""

    def __enter__(self) -> str:
        self._dir = tempfile.TemporaryDirectory(prefix="compss-infer-verify-")
        return self._dir.name

    def __exit__(self, *exc: Any) -> None:
        self._dir.cleanup()
