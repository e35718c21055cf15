"""A loaded model: one tf.compat.v1.Session over an imported frozen graph, ready to run batches.

Loading does all checks (parse, audit, tensors, feeds, preprocessing fit, device) and a warm-up
run, so problems surface at start-up and the first real chunk does not pay TensorFlow's first-run
cost.  Batches of any size are accepted: fixed-batch graphs are fed in padded slices, unbatched
and scalar-path graphs one item at a time.
"""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from . import graph as graphmod
from ..core.contracts import ModelInfo, WorkerSpec
from ..core.errors import ModelError
from .outputcheck import error_text
from .session import check_device, config_proto, import_tf, resolve_threads
from .batching import auto_batch


class Predictor:
    """The per-process, cached, ready-to-run model (plus its decode thread pool)."""

    def __init__(self, spec: WorkerSpec, data: bytes):
        tf = import_tf()
        started = time.perf_counter()
        self.spec = spec
        self.model_id = hashlib.sha256(data).hexdigest()[:16]
        device = check_device(spec.session)
        gd = graphmod.parse_graph_def(data, spec.model.path)
        self.graph = graphmod.import_graph(gd, spec.model.path)
        info, self._x, self._y = graphmod.analyze(self.graph, gd, spec.model, spec.preprocess, spec.top_k)
        unsafe = graphmod.check_safety(gd, info, spec.model)
        self._feeds = graphmod.check_feeds(self.graph, spec.model, self._x)
        self.inter, self.intra = resolve_threads(spec.session, spec.default_threads)
        self.session = tf.compat.v1.Session(graph=self.graph,
                                            config=config_proto(spec.session, self.inter, self.intra))
        batch = spec.batch_size or auto_batch(info.height, info.width, info.channels, info.fixed_batch,
                                              info.takes_paths)
        self.info = ModelInfo(**{**info.__dict__, "unsafe_ops": unsafe, "device": device, "batch_size": batch})
        self._np_dtype = np.dtype(self._x.dtype.as_numpy_dtype) if not info.takes_paths else None
        self.decoder = ThreadPoolExecutor(max_workers=max(1, spec.decode_threads),
                                          thread_name_prefix="compss-infer-decode")
        self._warm_up()
        self.load_s = time.perf_counter() - started

    @property
    def input_dtype(self) -> np.dtype | None:
        return self._np_dtype

    def _warm_up(self) -> None:
        """Run once on zeros so shape/dtype problems show now and the first chunk runs warm."""
        info = self.info
        if info.takes_paths:
            return
        # the real batch shape (oneDNN prepares per shape), but never more images than the run has
        n = info.fixed_batch or min(info.batch_size, self.spec.warm_up_images or info.batch_size)
        try:
            zeros = np.zeros((n, info.height, info.width, info.channels), dtype=self._np_dtype)
            self.infer(zeros)
        except MemoryError:
            raise ModelError(f"a batch of {n} images does not fit in memory: use a smaller --batch-size") from None
        except Exception as exc:
            if type(exc).__name__ == "ResourceExhaustedError":
                raise ModelError(f"a batch of {n} images cannot be allocated ({_tf_message(exc)}): "
                                 f"use a smaller --batch-size") from None
            raise ModelError(f"the model fails on a test batch: {_tf_message(exc)}") from None

    def _run(self, value: Any) -> np.ndarray:
        feed = dict(self._feeds)
        feed[self._x] = value
        return np.asarray(self.session.run(self._y, feed_dict=feed))

    def infer(self, batch: np.ndarray | Sequence[bytes]) -> np.ndarray:
        """Outputs for a batch: ``(n, ...)`` for n images (uint8/float array) or n path strings."""
        kind = self.info.input_kind
        n = len(batch)
        if kind in ("path", "unbatched"):
            return np.stack([self._run(item) for item in batch])
        if kind == "flat":
            batch = np.asarray(batch).reshape(n, -1)
        if kind == "path_batch":
            batch = np.asarray(list(batch), dtype=object)
        fixed = self.info.fixed_batch
        if not fixed or fixed == n:
            return self._run(batch)
        from .batching import run_in_slices
        return run_in_slices(self._run, batch, fixed, self.info.output_name)

    def close(self) -> None:
        self.decoder.shutdown(wait=False, cancel_futures=True)
        self.session.close()


def _tf_message(exc: BaseException) -> str:
    """The reason of a TensorFlow error in one line, without "Graph execution error:" and tracebacks."""
    return error_text(exc)
