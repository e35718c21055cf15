"""The range of values a preprocessing feeds, and the mean/std that map pixels onto a range.

``(pixel - mean) / std`` over pixels 0..255 gives the fed range; a quantized model input says the
range it was calibrated on through its scale and zero point.  ``run`` refuses a preprocessing whose
range does not fit (run/advice.py); ``inspect`` prints the range and the mean/std that fit it.
"""
from __future__ import annotations

from typing import Sequence

FIT = 0.75  # share of the expected range the fed values must cover, and of the fed values inside it


def fed_range(mean: Sequence[float], std: Sequence[float]) -> tuple[float, float]:
    """The values ``(pixel - mean) / std`` takes over pixels 0..255, all channels together."""
    n = max(len(mean), len(std))
    lows = [(0.0 - mean[c % len(mean)]) / std[c % len(std)] for c in range(n)]
    highs = [(255.0 - mean[c % len(mean)]) / std[c % len(std)] for c in range(n)]
    return min(lows), max(highs)


def fits(fed: tuple[float, float], expected: tuple[float, float]) -> bool:
    """Most of the expected range is used, and most of what is fed falls inside it.

    Per-channel normalizations (ImageNet mean/std) and calibration ranges a little narrower than
    the data pass; raw pixels 0..255 into [-1, 1], or 0..1 into [-1, 1], do not.
    """
    overlap = max(0.0, min(fed[1], expected[1]) - max(fed[0], expected[0]))
    return overlap >= FIT * (expected[1] - expected[0]) and overlap >= FIT * (fed[1] - fed[0])


def mean_std_for(expected: tuple[float, float]) -> tuple[float, float]:
    """mean/std that map pixels 0..255 onto ``expected`` (for an 8-bit input: exactly its integer grid)."""
    std = 255.0 / (expected[1] - expected[0])
    return -expected[0] * std, std


def short(x: float) -> str:
    """A range end or mean/std for a message: 4 significant digits."""
    return f"{x + 0.0:.4g}"  # + 0.0: never "-0"
