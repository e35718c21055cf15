"""Warnings about choices nobody made: said once on stderr and kept in the run's summary."""
from __future__ import annotations

from ..core.specs import RunConfig
from ..core.contracts import ModelInfo


def unchosen_preprocessing(cfg: RunConfig, info: ModelInfo) -> str | None:
    """A float image input fed with the default mean/std that no card, file or flag chose."""
    if info.takes_paths or not info.input_dtype.startswith(("float", "bfloat", "half")):
        return None
    if {"preprocess.mean", "preprocess.std"} & cfg.chosen:
        return None
    mode = cfg.preprocess.mode
    return (f"no model card or config sets preprocess.mean/std for the float input {info.input_name}: feeding "
            f"{mode} pixels 0..255 with no normalization; if the model expects otherwise, set them, e.g. "
            f"--set preprocess.std=255 for 0..1 or --set preprocess.mean=127.5 --set preprocess.std=127.5 "
            f"for -1..1 (or write a model card)")


def fast_decode(cfg: RunConfig, info: ModelInfo) -> str | None:
    """preprocess.decode=fast may change a class id: said once, like any fast path."""
    if cfg.preprocess.decode != "fast" or info.takes_paths:
        return None
    return (f"preprocess.decode=fast: large images are decoded at reduced scale (JPEG DCT scaling) and reduced to "
            f"about the model's {info.height}x{info.width} before the resize, so a class can differ from a full "
            f"decode (top-1 agreement measured on real photos in docs/benchmarks.md); the default, "
            f"preprocess.decode=safe, keeps twice the model's size")
