"""``quantize``: a frozen fp32 GraphDef -> an int8 ``.tflite`` model whose agreement with fp32 is shown.

TensorFlow's converter calibrates post-training quantization of weights and activations on a
representative dataset decoded and normalized exactly as ``run`` does (preprocess.decode + normalize,
same config layering).  The int8 model then runs in LiteRT beside the fp32 graph on images never
calibrated on (quantcheck: held-out images, topped up with augmented views of them when there are
few); it is written (atomically, with a model card beside it) only when the 95 % lower bound of the
top-1 agreement reaches ``min_agreement``.  When full int8 falls short, the ops that give back most
of fp32's top-1 margin when kept in float (measured on calibration images) stay in float, a few more
at each step, until the check passes (fallback.py); the card records what stayed float, the figures
and the speed cost.

Input and output types: int8 both, measured fastest end to end (W2, 2 cores: int8/int8 beat
uint8-in/float-out in 5 of 5 interleaved runs, by 3-16 %; docs/benchmarks.md).  The worker hands
LiteRT the decoded uint8 pixels and the backend maps them through a table built from the input's
scale and zero point (exact for any of them).  An int8 softmax output comes in steps of 1/256.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import yaml

from ..core.atomic import atomic_open, write_bytes
from ..core.specs import RunConfig
from .files import card_path_for
from ..core.contracts import WorkerSpec
from ..core.errors import InputError, ModelError
from ..images.listing import WalkNotes, discover, is_image_name, read_list
from ..images.preprocess import Geometry, ImageError, decode, normalize
from .fallback import FloatOp
from .quantcheck import AgreementTooLow, CheckSet, CheckTooSmall, Verification, refuse_if_too_small  # noqa: F401

DEFAULT_SAMPLES = 300
DEFAULT_MIN_AGREEMENT = 0.95  # the 95 % lower bound must reach it (docs/models.md section 10)
HELD_OUT_FRACTION = 0.2  # without --check: every 5th image is held out for the check
MAX_CHECK = 1000
SPEED_IMAGES = 256  # check images timed for the fallback's speed cost


@dataclass
class QuantizeResult:
    output: str
    card: str
    source_bytes: int
    output_bytes: int
    calibration_images: int
    verification: Verification
    input: dict[str, Any] = field(default_factory=dict)
    output_tensor: dict[str, Any] = field(default_factory=dict)
    full_int8: Verification | None = None  # full int8's figures when ops were kept in float
    float_ops: list[FloatOp] = field(default_factory=list)
    speed: dict[str, float] = field(default_factory=dict)  # model-only images/s: full_int8, written


def list_images(images_dir: str | None, image_list: str | None, what: str) -> list[str]:
    """Absolute image paths from a folder (sorted, recursive) or a list file (order kept)."""
    if images_dir:
        notes = WalkNotes()
        paths = [os.path.join(images_dir, rel) for rel in discover(images_dir, notes)]
        for line in notes.warnings():  # a folder it could not list is named, never skipped in silence
            logging.getLogger("compss_infer").warning("%s: %s", what, line)
    elif image_list:
        base = os.path.dirname(os.path.abspath(image_list))
        paths = [p if os.path.isabs(p) else os.path.join(base, p) for p in read_list(image_list)]
    else:
        raise InputError(f"{what}: give --calibration DIR or --calibration-list FILE")
    paths = [os.path.abspath(p) for p in paths if is_image_name(p)]
    if not paths:
        raise InputError(f"{what}: no images found")
    return paths


def spread(items: list[str], n: int) -> list[str]:
    """``n`` items evenly spaced over the list (sorted folders: every class gets its share)."""
    if n >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def split(paths: list[str], samples: int, check_paths: list[str] | None) -> tuple[list[str], list[str]]:
    """(calibration, check): with no check set, every 5th image is held out (never calibrated on)."""
    if check_paths is not None:
        return spread(paths, samples), spread(check_paths, MAX_CHECK)
    if len(paths) < 2:
        raise InputError("the calibration set needs at least 2 images when --check is not given "
                         "(one part is held out for the check)")
    step = int(round(1 / HELD_OUT_FRACTION))
    held = paths[step - 1::step] or paths[-1:]
    held_set = set(held)
    rest = [p for p in paths if p not in held_set]
    return spread(rest, samples), spread(held, MAX_CHECK)


def _decoded(paths: list[str], cfg: RunConfig, geometry: Geometry) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode like the worker does: (uint8 pixels, normalized float32, how many failed)."""
    arrays, bad = [], 0
    for p in paths:
        try:
            arrays.append(decode(p, cfg.preprocess, geometry))
        except ImageError:
            bad += 1
    if not arrays:
        raise InputError("none of the calibration images could be decoded")
    pixels = np.stack(arrays)
    return pixels, normalize(pixels, cfg.preprocess, np.dtype(np.float32)), bad


def _outputs(predictor: Any, x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(predictor.infer(x[s:s + 32])).reshape(len(x[s:s + 32]), -1)
                           for s in range(0, len(x), 32)])


def check_destination(model: str, output: str, overwrite: bool) -> str:
    if not output.endswith(".tflite"):
        raise InputError(f"--output {output}: expected a .tflite file name")
    if os.path.isdir(output):
        raise InputError(f"--output {output} is a directory")
    card = card_path_for(output)
    if os.path.abspath(card) == os.path.abspath(card_path_for(model)):
        raise InputError(f"--output {output} would replace the model card of {model}: choose another name")
    for path in (output, card):
        if os.path.exists(path) and not overwrite:
            raise InputError(f"{path} exists (use --overwrite to replace it)")
    return card


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _scores_text(y: Any) -> str:
    if not y.quantized:
        return f"{y.dtype} scores (the op writing the output was kept in float): no steps to tie on"
    step = " (1/256)" if abs(y.scale * 256 - 1) < 1e-6 else ""
    return (f"{y.dtype} scores in steps of {y.scale:.6g}{step}: two classes can tie on the top score; "
            f"run writes such a row with a TiedTopScore note naming the tied classes")


def _card(cfg: RunConfig, output: str, card: str, int8: Any, calib: int, res: "QuantizeResult",
          source_sha: str, size: int) -> dict[str, Any]:
    pre = cfg.to_dict()["preprocess"]
    pre.pop("decode", None)  # how far a run may shrink large images is the run's choice, not the model's
    pre["size"] = [int8.info.height, int8.info.width]
    model: dict[str, Any] = {"input": int8.info.input_name, "output": int8.info.output_name}
    if cfg.model.labels:  # relative to the card, even above its folder: model, card and labels move together
        model["labels"] = os.path.relpath(cfg.model.labels, os.path.dirname(os.path.abspath(card)))
    x, y = int8.tensors
    ver = res.verification
    verification = {"check_images": ver.images, "source": _portable(ver.source, card),
                    "top1_agreement": round(ver.agreement, 4),
                    "max_score_difference": None if ver.max_score_diff is None else round(ver.max_score_diff, 5),
                    **{k: v for k, v in ver.figures().items() if k not in ("top1_agreement", "check_images")}}
    if res.full_int8 is not None:
        verification["full_int8"] = {k: res.full_int8.figures()[k] for k in ("top1_agreement", "lower_bound_95")}
    if res.speed:
        verification["model_only_images_per_s"] = res.speed
    return {
        "name": os.path.splitext(os.path.basename(output))[0],
        "description": f"int8 post-training quantization of {os.path.basename(cfg.model.path)} "
                       f"(compss-infer quantize)"
                       + (f", {len(res.float_ops)} ops kept in float" if res.float_ops else ""),
        "model": model,
        "preprocess": pre,
        "tensors": {x.name: str(x).split(" ", 1)[1], y.name: str(y).split(" ", 1)[1]},
        "quantization": {
            "weights": "int8", "activations": "int8" + (", except the float_ops" if res.float_ops else ""),
            "input": {"dtype": x.dtype, "scale": x.scale, "zero_point": x.zero_point},
            "output": {"dtype": y.dtype, "scale": y.scale, "zero_point": y.zero_point},
            "scores": _scores_text(y),
            "calibration_images": calib,
            "float_ops": [str(f) for f in res.float_ops],
        },
        "verification": verification,
        "source": {"model": os.path.basename(cfg.model.path), "sha256": source_sha},
        "bytes": size,
    }


def _portable(source: str, card: str) -> str:
    """``--check /abs/dir`` -> relative to the card's folder, so rebuilt cards match on any checkout."""
    if source.startswith("--check "):
        return "--check " + os.path.relpath(source[len("--check "):], os.path.dirname(os.path.abspath(card)))
    return source


def _speeds(models: dict[str, Any], check: CheckSet) -> dict[str, float]:
    """Model-only images/s of each model on the check pixels: three alternating passes, best of each
    (on a busy machine the best pass is the least disturbed one)."""
    n = min(SPEED_IMAGES, len(check))
    best = dict.fromkeys(models, 0.0)
    for _ in range(3):
        for name, predictor in models.items():
            t = time.perf_counter()
            check.outputs(predictor, limit=n)
            best[name] = max(best[name], n / max(time.perf_counter() - t, 1e-9))
    return {k: round(v, 1) for k, v in best.items()}


def _not_written(ver: Verification, min_agreement: float, full: Verification | None, tried: int,
                 fallback: bool) -> AgreementTooLow:
    tail = ""
    if full is not None and tried:
        tail = f"; full int8 {full.agreement:.4f}, with {tried} ops kept in float {ver.agreement:.4f}"
    elif not fallback:
        tail = " (--no-fallback: no ops kept in float)"
    return AgreementTooLow(f"int8 model not written: {ver.line()}; the lower bound is under --min-agreement "
                           f"{min_agreement:g}{tail}")


def quantize_model(cfg: RunConfig, output: str, samples: int = DEFAULT_SAMPLES,
                   min_agreement: float = DEFAULT_MIN_AGREEMENT, check_dir: str | None = None,
                   overwrite: bool = False, progress: Any = None, fallback: bool = True) -> QuantizeResult:
    """Convert, check, fall back if needed, and write ``output`` + its card.

    Raises CheckTooSmall (exit 2) before any work when the check set cannot show ``min_agreement``,
    and AgreementTooLow (exit 1) when no candidate's lower bound reaches it.
    """
    from .backends.litert import LiteRTPredictor
    from .backends.tf_graph import GraphPredictor
    from .fallback import SENSITIVITY_IMAGES, Calibrated, search
    from .graph import read_model_bytes

    say = progress or (lambda _msg: None)
    output = os.path.abspath(output)
    card = check_destination(cfg.model.path, output, overwrite)
    if samples < 1:
        raise InputError(f"--samples must be >= 1, got {samples}")
    if not 0.0 <= min_agreement <= 1.0:
        raise InputError(f"--min-agreement must be between 0 and 1, got {min_agreement}")
    paths = list_images(cfg.run.images, cfg.run.image_list, "calibration")
    checks = list_images(check_dir, None, "--check") if check_dir else None
    calib_paths, check_paths = split(paths, samples, checks)
    source = f"--check {check_dir}" if check_dir else "held-out calibration images"
    refuse_if_too_small(len(check_paths), min_agreement, "images in --check DIR" if check_dir else
                        "held-out calibration images (every 5th)")

    spec = WorkerSpec(model=cfg.model, preprocess=cfg.preprocess, session=cfg.session, default_threads=None)
    data = read_model_bytes(cfg.model.path)
    fp32 = GraphPredictor(spec, data)
    opened: list[Any] = []
    try:
        info = fp32.info
        if info.takes_paths or info.input_kind not in ("image", "flat") or info.input_dtype not in ("float32",):
            raise ModelError(f"quantize needs a float32 image-tensor input, {info.input_name} is "
                             f"{info.input_dtype} {info.input_kind}")
        geometry = Geometry(info.height, info.width, info.channels)
        pixels, calib, bad = _decoded(calib_paths, cfg, geometry)
        say(f"calibrating on {len(calib)} images" + (f" ({bad} could not be decoded)" if bad else ""))
        if info.input_kind == "flat":
            calib = calib.reshape(len(calib), -1)
        cal = Calibrated(cfg.model.path, info.input_name, info.output_name, calib)
        int8_spec = replace(spec, model=replace(cfg.model, path=output, input=None, output=None))

        def load(blob: bytes) -> Any:
            p = LiteRTPredictor(int8_spec, blob)
            opened.append(p)
            return p

        check = CheckSet(fp32, cfg, check_paths, source, say)
        what = f"images of {source}" if check_dir else source
        say(f"checking on {len(check)} images" + (f" ({check.held_out} {what} + {check.views} augmented views)"
                                                  if check.views else f" of {source}" if check_dir else f" ({what})"))
        refuse_if_too_small(check.held_out, min_agreement, f"decodable {source}")
        full_model = load(cal.full)
        full = ver = check.measure(full_model)
        blob, chosen, float_ops = cal.full, full_model, []
        say(f"full int8: {full.line()}")
        if ver.lower_bound < min_agreement and fallback:

            def measure(candidate: bytes) -> tuple[Verification, Any]:
                p = load(candidate)
                return check.measure(p), p

            rank = np.linspace(0, len(pixels) - 1, min(SENSITIVITY_IMAGES, len(pixels))).round().astype(int)
            reference = _outputs(fp32, normalize(pixels[rank], cfg.preprocess, fp32.input_dtype))

            def outputs(candidate: bytes) -> np.ndarray:
                p = LiteRTPredictor(int8_spec, candidate)
                try:
                    return _outputs(p, normalize(pixels[rank], cfg.preprocess, p.input_dtype))
                finally:
                    p.close()

            found = search(cal, outputs, reference, measure, min_agreement, say)
            if found is not None:
                blob, float_ops, ver, chosen = found.blob, found.float_ops, found.verification, found.predictor
        if ver.lower_bound < min_agreement:
            raise _not_written(ver, min_agreement, full, len(float_ops), fallback)
        result = QuantizeResult(output=output, card=card, source_bytes=len(data), output_bytes=len(blob),
                                calibration_images=len(calib), verification=ver,
                                full_int8=full if float_ops else None, float_ops=float_ops)
        if float_ops:
            result.speed = _speeds({"full_int8": full_model, "written": chosen}, check)
        x, y = chosen.tensors
        result.input = {"name": x.name, "dtype": x.dtype, "scale": x.scale, "zero_point": x.zero_point}
        result.output_tensor = {"name": y.name, "dtype": y.dtype, "scale": y.scale}
        doc = _card(cfg, output, card, chosen, len(calib), result, _sha256(cfg.model.path), len(blob))
    finally:
        for p in opened:
            p.close()
        fp32.close()
    write_bytes(output, blob)
    with atomic_open(card, "w", encoding="utf-8") as fh:
        fh.write("# Model card written by compss-infer quantize\n")
        yaml.safe_dump(doc, fh, sort_keys=False)
    return result
