"""Backend-agnostic checks on what a model answers: one score row per image, finite scores.

Runs on any predictor (TF session, LiteRT, ...) through only ``predictor.info``,
``predictor.input_dtype`` and ``predictor.infer(batch)``.  At load time ``check_outputs`` runs
the model at two batch sizes and refuses (ModelError, exit 2) a graph whose output does not
follow the input batch; at run time ``batch_rows`` checks every batch and turns a bad output
into error rows, so rows are never misaligned and a NaN is never written as a class.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from ..core.contracts import ModelInfo
from ..core.errors import ConfigError, ModelError

_BATCHED = ("image", "flat", "path_batch")


def _dims(shape: Sequence[int | None] | None) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _static_checks(info: ModelInfo) -> None:
    """What the declared shapes alone already show."""
    out = info.output_shape
    if out is None:
        return
    if len(out) == 0 and info.input_kind in _BATCHED:
        raise ModelError(f"output {info.output_name} is a scalar (rank 0) for an input batch "
                         f"{_dims(info.input_shape)}: expected one row per image")
    if info.fixed_batch and info.input_kind in _BATCHED and out and out[0] is not None and out[0] != info.fixed_batch:
        raise ModelError(f"output {info.output_name} shape {_dims(out)} does not follow the fixed input batch "
                         f"{_dims(info.input_shape)}: expected {info.fixed_batch} rows")


def _sample_images(folder: str, info: ModelInfo) -> list[str]:
    """Small real image files for path-input graphs: a JPEG (what such graphs most often decode), a PNG."""
    from PIL import Image
    mode = "L" if (info.channels or 3) == 1 else "RGB"
    im = Image.new(mode, (info.width or 8, info.height or 8), 128)
    paths = [os.path.join(folder, "check.jpg"), os.path.join(folder, "check.png")]
    im.save(paths[0], quality=90)
    im.save(paths[1])
    return paths


def _sample(info: ModelInfo, dtype: Any, n: int, image: str | None) -> Any:
    if info.takes_paths:
        return [os.fsencode(image)] * n
    return np.zeros((n, info.height, info.width, info.channels), dtype=dtype)


def _per_image(out: np.ndarray, n: int, info: ModelInfo, fed: str) -> int:
    """Check one test output for a batch of ``n``; return the values per image."""
    if out.ndim == 0 or out.shape[0] != n:
        raise ModelError(f"output {info.output_name} has shape {_dims(out.shape)} for an input batch {fed}: "
                         f"its leading dimension does not follow the batch (expected {n} rows, one per image)")
    rest = out.shape[1:]
    if any(d != 1 for d in rest[:-1]):
        raise ModelError(f"output {info.output_name} gives {_dims(rest)} values per image (shape {_dims(out.shape)} "
                         f"for input {fed}): expected one score vector per image (set model.output)")
    per = int(rest[-1]) if rest else 1
    if info.output_kind == "class_id" and per != 1:
        raise ModelError(f"output {info.output_name} gives {per} class ids per image: expected one")
    if info.output_kind == "scores" and per < 2:
        raise ModelError(f"output {info.output_name} gives one score per image (shape {_dims(out.shape)}): "
                         f"the best of one value is always class 0; set model.output to the scores of every class")
    return per


class _Undecodable(Exception):
    """A path-input graph failed on a test image format."""


def check_outputs(predictor: Any, top_k: int = 1) -> ModelInfo:
    """Run the model at two batch sizes; refuse outputs that do not give one row per image.

    Returns the info with ``num_classes`` filled in from the real output.  A path-input graph
    that decodes neither test image (JPEG, PNG) keeps the static checks only (the per-batch checks still hold).
    """
    info: ModelInfo = predictor.info
    _static_checks(info)
    fixed = info.fixed_batch if info.input_kind in _BATCHED else None
    sizes = (fixed, 1) if fixed and fixed > 1 else ((1,) if fixed else (1, 2))
    dtype = getattr(predictor, "input_dtype", None)
    per = None
    with tempfile.TemporaryDirectory(prefix="compss-infer-check-") as tmp:
        images = _sample_images(tmp, info) if info.takes_paths else [None]
        for image in images:
            try:
                for n in sizes:
                    batch = _sample(info, dtype, n, image)
                    fed = f"({n},)" if info.takes_paths else _dims(np.shape(batch))
                    try:
                        out = np.asarray(predictor.infer(batch))
                    except ModelError:
                        raise
                    except Exception as exc:
                        if info.takes_paths:
                            raise _Undecodable() from None
                        raise ModelError(f"the model fails on a test batch {fed}: {error_text(exc)}") from None
                    per = _per_image(out, n, info, fed)
                break
            except _Undecodable:
                continue  # the graph decodes only other formats; if none, the per-batch checks still hold
    if info.output_kind != "scores" or per is None:
        return info
    if info.num_classes is not None and info.num_classes != per:
        raise ModelError(f"output {info.output_name} declares {info.num_classes} classes but gives {per}")
    if top_k > per:
        raise ConfigError(f"run.top_k={top_k} exceeds the model's {per} classes")
    return replace(info, num_classes=per)


def _non_finite(row: np.ndarray) -> str:
    kinds = [name for name, bad in (("NaN", np.isnan(row).any()), ("Inf", np.isinf(row).any())) if bad]
    return ", ".join(kinds)


def batch_rows(out: Any, offsets: list[int], info: ModelInfo, errors: dict[int, str]) -> tuple[np.ndarray | None, list[int]]:
    """(one row per kept image, kept offsets): checks a batch's output, bad images go to ``errors``.

    A wrong row count fails the whole batch (its rows cannot be matched to images); non-finite
    scores and negative class ids fail their own image.
    """
    arr = np.asarray(out)
    n = len(offsets)
    if arr.ndim == 0 or arr.shape[0] != n:
        text = (f"InferenceError: the model returned output shape {_dims(arr.shape)} for a batch of {n} "
                f"image(s): rows do not match images")
        for off in offsets:
            errors[off] = text
        return None, []
    rows = arr.reshape(n, -1)
    if info.output_kind == "class_id":
        top = info.num_classes
        ok = (rows.shape[1] == 1) & (rows[:, 0] >= 0) if rows.size else np.zeros(n, bool)
        if top is not None and rows.size:
            ok &= rows[:, 0] < top
        why = lambda j: (f"InferenceError: {rows.shape[1]} class ids for one image" if rows.shape[1] != 1
                         else f"InferenceError: negative class id {int(rows[j, 0])}" if rows[j, 0] < 0
                         else f"InferenceError: class id {int(rows[j, 0])} is out of range (the model has {top} classes)")
    else:
        rows = rows.astype(np.float32, copy=False)
        if info.num_classes is not None and rows.shape[1] != info.num_classes:
            ok = np.zeros(n, bool)
            why = lambda j: f"InferenceError: {rows.shape[1]} scores for one image, the model has {info.num_classes} classes"
        else:
            ok = np.isfinite(rows).all(axis=1) & (rows.shape[1] > 0)
            why = lambda j: f"InferenceError: non-finite scores ({_non_finite(rows[j]) or 'empty'})"
    if ok.all():
        return rows, list(offsets)
    kept = []
    for j, off in enumerate(offsets):
        if ok[j]:
            kept.append(off)
        else:
            errors[off] = why(j)
    return rows[ok], kept


# TensorFlow's preamble around the real reason ("Node: 'x'" names where, the next line says why).
_NOISE = ("Graph execution error:", "Detected at node", "Original stack trace", "defined at (most recent call last)",
          "Node: '")


def error_text(exc: BaseException) -> str:
    """The reason of a backend error in one line (TensorFlow's runtime errors put it after a preamble)."""
    text = (getattr(exc, "message", None) or str(exc) or "").strip()
    if not text:
        return type(exc).__name__
    lines = [" ".join(line.split()) for line in text.splitlines()]
    for line in lines:
        if not line or line.startswith(_NOISE) or line.startswith(("File ", "[[", "{{", "Op:")) \
                or line.endswith(":") and line.startswith("node "):
            continue
        return line
    return lines[0] or type(exc).__name__
