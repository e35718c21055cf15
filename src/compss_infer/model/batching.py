"""Feeding a batch of any size to a model whose batch dimension is fixed (shared by the backends)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ModelError


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
