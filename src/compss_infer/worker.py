"""The worker function: classify one chunk of image paths.  Pure and engine-agnostic.

``classify_chunk(spec, paths)`` runs wherever an engine puts it (in-process, a local pool
process, a PyCOMPSs executor).  It returns a ChunkResult aligned with ``paths``; a bad image
becomes an error entry, never an exception.  Decoding of the next batch overlaps inference of
the current one (Pillow and TensorFlow both release the GIL).
"""
from __future__ import annotations

import os
import socket
import time
from collections import deque
from typing import Sequence

import numpy as np

from .model import cache
from .core.contracts import ChunkResult, ModelInfo, TaskTiming, WorkerSpec
from .core.errors import CompssInferError
from .model.outputcheck import batch_rows, check_outputs, error_text
from .images.preprocess import Geometry, ImageError, check_header, decode, normalize
from .images.readers import fetch
from .images.shards import SHARD_REFS, ShardSlice, SliceList, read_refs


class _Done:
    """An already-computed value with a future's ``result()``."""

    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


def _load(spec: WorkerSpec) -> tuple[object, bool, ModelInfo]:
    """(predictor, loaded_now, checked info): the output checks run once per loaded predictor.

    The verdict is kept on the predictor, so a model refused once is refused by every later chunk
    in this process too, whatever the backend.
    """
    predictor, loaded_now = cache.get_predictor(spec)
    verdict = getattr(predictor, "checked_info", None)
    if verdict is None:
        try:
            verdict = check_outputs(predictor, spec.top_k)
        except CompssInferError as exc:
            verdict = exc
        predictor.checked_info = verdict
    if isinstance(verdict, BaseException):
        raise verdict
    return predictor, loaded_now, verdict


def warm_up(spec: WorkerSpec) -> ModelInfo:
    """Load and check the model into this process's cache; the master's preflight."""
    return _load(spec)[2]


def _decode_batch(paths: Sequence[object], spec: WorkerSpec, geometry: Geometry):
    """Decode a batch: (uint8 array of the good images, their offsets, {offset: error text}).

    ``paths``: file paths, tar member references (read here, one range per shard) or known errors.
    """
    arrays, good, errors = [], [], {}
    for i, source in enumerate(fetch(paths)):
        try:
            if isinstance(source, ImageError):
                raise source
            arrays.append(decode(source, spec.preprocess, geometry))
            good.append(i)
        except ImageError as exc:
            errors[i] = exc.row_text()
    batch = np.stack(arrays) if arrays else None
    return batch, good, errors


def tie_notes(rows: np.ndarray, offsets: list[int]) -> dict[int, str]:
    """{offset: note} for rows whose top score is shared by two or more classes.

    An int8 softmax gives scores in steps of 1/256, so two classes can tie where fp32 would have
    told them apart (and any model can tie exactly); nothing in the output says which way, so the
    row keeps the lowest tied id and says so, instead of passing a coin toss off as an answer.
    """
    top = rows.max(axis=1, keepdims=True)
    tied = np.flatnonzero((rows == top).sum(axis=1) > 1)
    out = {}
    for r in tied:
        classes = np.flatnonzero(rows[r] == top[r, 0])
        shown = " ".join(str(int(c)) for c in classes[:10]) + (" ..." if len(classes) > 10 else "")
        out[offsets[r]] = (f"TiedTopScore: classes {shown} share the top score {format(float(top[r, 0]), '.6g')}; "
                           f"the class_id is the lowest of them")
    return out


def _infer_isolating(predictor, items, offsets, errors, kind):
    """Run a batch; if it fails, run its items one by one so only the bad ones fail.

    Returns [(output, offsets)] pieces, each still to be checked row by row (``batch_rows``).
    """
    try:
        return [(predictor.infer(items), list(offsets))]
    except Exception as exc:
        if len(offsets) == 1:
            errors[offsets[0]] = f"{kind}: {error_text(exc)}"
            return []
    pieces = []
    for j, off in enumerate(offsets):
        try:
            pieces.append((predictor.infer(items[j:j + 1]), [off]))
        except Exception as exc:
            errors[off] = f"{kind}: {error_text(exc)}"
    return pieces


def classify_chunk(spec: WorkerSpec, paths: Sequence[str] | ShardSlice | SliceList) -> ChunkResult:
    """Classify ``paths`` (absolute) in batches of ``spec.batch_size`` (default: the model's).

    ``paths`` may be a slice of a tar shard instead: its samples are found here (the master knows
    only their offsets), and the result carries their row paths (``listed``) and ``.cls`` ids.
    """
    started = time.time()
    predictor, loaded_now, info = _load(spec)
    listed = truth = None
    if isinstance(paths, SHARD_REFS):
        listed, paths, truth = read_refs(paths)
        if info.takes_paths:  # the runner refuses this before any work; never feed a graph a member
            paths = [ImageError("UnsupportedInput", "this graph reads image files by path; a tar member "
                                "has none")] * len(paths)
    n = len(paths)
    ids = np.full(n, -1, np.int64)
    scores = np.full(n, np.nan, np.float32) if info.output_kind == "scores" else None
    k = spec.top_k if info.output_kind == "scores" and spec.top_k > 1 else 0
    topk_ids = np.full((n, k), -1, np.int64) if k else None
    topk_scores = np.full((n, k), np.nan, np.float32) if k else None
    errors: dict[int, str] = {}
    notes: dict[int, str] = {}
    decode_s = infer_s = 0.0

    def store(pieces: list) -> None:
        for out, offsets in pieces:
            rows, kept = batch_rows(out, offsets, info, errors)
            if kept:
                put(rows, kept)

    def put(rows: np.ndarray, offsets: list[int]) -> None:
        idx = np.asarray(offsets)
        if info.output_kind == "class_id":
            ids[idx] = rows[:, 0].astype(np.int64)
            return
        rows = rows.astype(np.float32, copy=False)
        best = rows.argmax(axis=1)
        ids[idx] = best
        scores[idx] = rows[np.arange(len(rows)), best]
        notes.update(tie_notes(rows, offsets))
        if k:
            order = np.argsort(-rows, axis=1, kind="stable")[:, :k]
            topk_ids[idx] = order
            topk_scores[idx] = np.take_along_axis(rows, order, axis=1)

    bs = max(1, spec.batch_size or info.batch_size)
    starts = list(range(0, n, bs))
    if info.takes_paths:
        for s in starts:
            t0 = time.perf_counter()
            offsets = []
            for i in range(s, min(s + bs, n)):
                try:
                    if isinstance(paths[i], ImageError):
                        raise paths[i]
                    check_header(paths[i], spec.preprocess.max_pixels, spec.preprocess.exif_transpose)
                    offsets.append(i)
                except ImageError as exc:
                    errors[i] = exc.row_text()
            t1 = time.perf_counter()
            decode_s += t1 - t0
            if offsets:
                items = [os.fsencode(paths[i]) for i in offsets]
                store(_infer_isolating(predictor, items, offsets, errors, "DecodeError"))
            infer_s += time.perf_counter() - t1
    else:
        geometry = Geometry(info.height, info.width, info.channels)
        ahead = max(1, spec.decode_threads)
        pending: deque = deque()
        next_batch = 0

        def submit() -> None:
            nonlocal next_batch
            s = starts[next_batch]
            if spec.decode_threads > 0:
                pending.append((s, predictor.decoder.submit(_decode_batch, paths[s:s + bs], spec, geometry)))
            else:  # decode inline, no overlap (one process per core already keeps every core busy)
                pending.append((s, _Done(_decode_batch(paths[s:s + bs], spec, geometry))))
            next_batch += 1

        while next_batch < len(starts) and len(pending) < ahead:
            submit()
        while pending:
            s, fut = pending.popleft()
            t0 = time.perf_counter()
            batch, good, errs = fut.result()
            decode_s += time.perf_counter() - t0  # time spent waiting for decode
            if next_batch < len(starts):
                submit()
            for off, text in errs.items():
                errors[s + off] = text
            if batch is None:
                continue
            t1 = time.perf_counter()
            x = normalize(batch, spec.preprocess, predictor.input_dtype)
            offsets = [s + g for g in good]
            store(_infer_isolating(predictor, x, offsets, errors, "InferenceError"))
            infer_s += time.perf_counter() - t1

    timing = TaskTiming(host=socket.gethostname(), pid=os.getpid(), started=started, finished=time.time(),
                        load_s=predictor.load_s if loaded_now else 0.0, decode_s=decode_s,
                        infer_s=infer_s, model_id=predictor.model_id)
    return ChunkResult(class_ids=ids, scores=scores, topk_ids=topk_ids, topk_scores=topk_scores,
                       errors=errors, timing=timing, listed=listed, truth=truth,
                       notes={i: t for i, t in notes.items() if i not in errors})
