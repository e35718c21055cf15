"""Choices nobody made, and choices the model cannot honour: refused before any work, or warned about.

Checked once the model is loaded in a worker (the master learns its input from ``ModelInfo``) and
before the first chunk is sent: a tensor input with no preprocessing chosen, a quantized input fed a
range it was not calibrated on, and preprocessing keys a graph that decodes paths itself ignores are
refused (``ConfigError``, exit 2, one line).  What only a warning can say goes on stderr and into
the summary's ``warnings``.
"""
from __future__ import annotations

from typing import Sequence

from ..core.contracts import ModelInfo
from ..core.errors import ConfigError
from ..core.specs import PreprocessSpec, RunConfig
from ..images.ranges import fed_range, fits, mean_std_for, short

RAW_PIXELS = "--set preprocess.mean=0 --set preprocess.std=1"
_SET_THEM = (f"set them to what the model was trained on, e.g. --set preprocess.std=255 for 0..1 or --set "
             f"preprocess.mean=127.5 --set preprocess.std=127.5 for -1..1, or declare raw 0..255 pixels on purpose "
             f"with {RAW_PIXELS} (or write a model card)")
# Pillow-side keys a path graph never sees
PATH_GRAPH_IGNORES = ("size", "mode", "resize", "crop", "mean", "std", "decode")


def _chosen_pre(cfg: RunConfig) -> bool:
    return bool({"preprocess.mean", "preprocess.std"} & cfg.chosen)


def _quantized_input(cfg: RunConfig, info: ModelInfo) -> None:
    """Refuse unless the fed range fits the one the input's scale and zero point say it was calibrated on."""
    expected = info.input_range
    assert expected is not None
    fed = fed_range(cfg.preprocess.mean, cfg.preprocess.std)
    if fits(fed, expected):
        return
    mean, std = mean_std_for(expected)
    want = f"[{short(expected[0])}, {short(expected[1])}]"
    fix = f"--set preprocess.mean={short(mean)} --set preprocess.std={short(std)}"
    if not _chosen_pre(cfg):
        raise ConfigError(f"no model card, config or flag sets preprocess.mean/std, and the quantized input "
                          f"{info.input_name} expects values in {want} (from its scale and zero point), not raw "
                          f"pixels 0..255: set them, e.g. {fix} (pixels 0..255 onto that range), or write a model card")
    raise ConfigError(f"preprocess.mean/std feed values in [{short(fed[0])}, {short(fed[1])}] but the quantized input "
                      f"{info.input_name} expects {want} (from its scale and zero point; values outside saturate): "
                      f"fix preprocess.mean/std, e.g. {fix}")


def _path_graph(cfg: RunConfig, info: ModelInfo) -> None:
    """A graph that decodes paths itself never sees the Pillow-side settings: a chosen one is refused."""
    default = PreprocessSpec()
    ignored = [k for k in PATH_GRAPH_IGNORES
               if f"preprocess.{k}" in cfg.chosen and getattr(cfg.preprocess, k) != getattr(default, k)]
    if ignored:
        shown = ", ".join(f"preprocess.{k}" for k in ignored)
        raise ConfigError(f"{shown} cannot be applied: the graph takes image paths ({info.input_name}) and decodes, "
                          f"resizes and scales them itself; remove {'it' if len(ignored) == 1 else 'them'}, or use "
                          f"a model with an image-tensor input")


def check_preprocessing(cfg: RunConfig, info: ModelInfo) -> None:
    """Refuse (exit 2) a run whose preprocessing nobody chose or the model cannot take, before any work."""
    if info.takes_paths:
        _path_graph(cfg, info)
        return
    if info.input_range is not None:
        _quantized_input(cfg, info)
        return
    if not info.input_dtype.startswith(("float", "bfloat", "half")) or _chosen_pre(cfg):
        return  # raw uint8 pixels are the only thing such an input takes (mean/std are refused for it)
    raise ConfigError(f"no model card, config or flag sets preprocess.mean/std for the float input "
                      f"{info.input_name}: {_SET_THEM}")


def check_quantize_source(cfg: RunConfig) -> None:
    """quantize calibrates with the preprocessing and writes it into the int8 model's card: it must be chosen."""
    if not _chosen_pre(cfg):
        raise ConfigError(f"no model card, config or flag sets preprocess.mean/std for {cfg.model.path}: quantize "
                          f"would calibrate with, and write into the int8 model's card, a pixel scaling nobody "
                          f"chose; {_SET_THEM}")


def class_count_unknown(info: ModelInfo, labels: Sequence[str] | None) -> str | None:
    """A class-id output whose class count cannot be read from the graph: the labels file is unchecked."""
    if info.output_kind != "class_id" or info.num_classes is not None or not labels:
        return None
    return (f"cannot tell how many classes the class-id output {info.output_name} chooses from (no ArgMax with a "
            f"fixed class axis found): the labels file's line count is not checked; rows whose id has no "
            f"labels line become error rows")


def fast_decode(cfg: RunConfig, info: ModelInfo) -> str | None:
    """preprocess.decode=fast may change a class id: said once, like any fast path."""
    if cfg.preprocess.decode != "fast" or info.takes_paths:
        return None
    return (f"preprocess.decode=fast: large JPEGs are decoded at reduced scale (DCT scaling) and reduced to about "
            f"the model's {info.height}x{info.width} before the resize, so a class can differ from a full decode "
            f"(top-1 agreement measured on real photos in docs/benchmarks.md); the default, preprocess.decode=safe, "
            f"keeps 4x the model's size")
