"""Feeding a batch of any size to a model whose batch dimension is fixed (shared by the backends)."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..core.errors import ModelError


def run_in_slices(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, fixed: int,
                  output_name: str) -> np.ndarray:
    """``run`` on slices of exactly ``fixed`` items; the last one padded with copies of its first item."""
    outs = []
    for s in range(0, len(batch), fixed):
        piece = batch[s:s + fixed]
        m = len(piece)
        if m < fixed:  # pad the last slice with copies of its first item
            piece = np.concatenate([piece, np.repeat(piece[:1], fixed - m, axis=0)])
        out = run(piece)
        if out.ndim == 0 or out.shape[0] != fixed:  # slicing would hide rows that are not per image
            raise ModelError(f"output {output_name} has shape {tuple(out.shape)} for the fixed "
                             f"input batch of {fixed}: rows do not match images")
        outs.append(out[:m])
    return np.concatenate(outs)


BATCH_PIXEL_BUDGET = 1_000_000  # input values per batch (uint8 count, before float conversion)
MAX_BATCH = 256


def auto_batch(height: int | None, width: int | None, channels: int | None, fixed: int | None,
               takes_paths: bool) -> int:
    """Largest power of two that keeps a batch near the pixel budget (1..MAX_BATCH)."""
    if fixed:
        return fixed if not takes_paths else max(1, fixed)
    if takes_paths or not (height and width and channels):
        return 32
    per_image = height * width * channels
    return int(min(MAX_BATCH, max(1, 2 ** math.floor(math.log2(max(1, BATCH_PIXEL_BUDGET // per_image))))))
