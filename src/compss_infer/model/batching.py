"""Feeding a batch of any size to a model whose batch dimension is fixed (shared by the backends)."""
from __future__ import annotations

from typing import Callable

import numpy as np


def run_in_slices(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, fixed: int) -> np.ndarray:
    """``run`` on slices of exactly ``fixed`` items; the last one padded with copies of its first item."""
    outs = []
    for s in range(0, len(batch), fixed):
        piece = batch[s:s + fixed]
        m = len(piece)
        if m < fixed:
            piece = np.concatenate([piece, np.repeat(piece[:1], fixed - m, axis=0)])
        outs.append(run(piece)[:m])
    return np.concatenate(outs)
