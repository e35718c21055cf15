"""``quantize``: a frozen fp32 GraphDef -> a full-integer (int8) ``.tflite`` model, checked before writing.

TensorFlow's converter (``tf.compat.v1.lite.TFLiteConverter.from_frozen_graph``) does post-training
quantization of weights and activations, calibrated on a representative dataset that is decoded and
normalized exactly as ``run`` does (preprocess.decode + normalize, same config layering).  The int8
model is then run by LiteRT beside the fp32 graph on images not used for calibration; it is written
(atomically, with a model card beside it) only when top-1 agreement reaches ``min_agreement``.

Input and output types: int8 both, measured fastest end to end (W2, 2 cores: int8/int8 beat
uint8-in/float-out in 5 of 5 interleaved runs, by 3-16 %; docs/benchmarks.md).  With pixel/255-style
preprocessing the quantized input is the raw pixel minus 128, so the worker hands over uint8 pixels and
LiteRT's backend flips their top bit; scores are dequantized in numpy.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

import numpy as np
import yaml

from ..core.atomic import atomic_open, write_bytes
from ..core.specs import RunConfig
from .files import card_path_for
from ..core.contracts import WorkerSpec
from ..core.errors import CompssInferError, InputError, ModelError
from ..images.listing import discover, is_image_name, read_list
from ..images.preprocess import Geometry, ImageError, decode, normalize
from .quiet import quiet_stderr

DEFAULT_SAMPLES = 300
DEFAULT_MIN_AGREEMENT = 0.95  # ImageNet MobileNet v1 measured 19/20 = 0.95; the digits CNN 1.0 (docs/models.md)
HELD_OUT_FRACTION = 0.2  # without --check: every 5th image is held out for the check
MAX_CHECK = 1000
VERIFY_BATCH = 32
INPUT_TYPE = "int8"
OUTPUT_TYPE = "int8"


class AgreementTooLow(CompssInferError):
    """The int8 model disagrees with fp32 too often: nothing written (exit 1, with the figures)."""

    exit_code = 1
    kind = "AgreementTooLow"


@dataclass
class Verification:
    """How the int8 model compares with the fp32 graph on the check images."""

    images: int
    agreement: float  # top-1 agreement, 0..1
    agreeing: int
    max_score_diff: float | None  # largest |fp32 - int8| over all scores (None for class-id outputs)
    source: str  # "--check DIR" or "held-out calibration images"
    skipped: int = 0  # images that failed to decode

    def line(self) -> str:
        diff = "" if self.max_score_diff is None else f", largest score difference {self.max_score_diff:.4f}"
        return (f"top-1 agreement {self.agreement:.4f} ({self.agreeing}/{self.images} images, {self.source})"
                f"{diff}")


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


def list_images(images_dir: str | None, image_list: str | None, what: str) -> list[str]:
    """Absolute image paths from a folder (sorted, recursive) or a list file (order kept)."""
    if images_dir:
        paths = [os.path.join(images_dir, rel) for rel in discover(images_dir)]
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


def _decoded(paths: list[str], cfg: RunConfig, geometry: Geometry, dtype: np.dtype,
             allow_none: bool = False) -> tuple[np.ndarray, int]:
    """Decode + normalize like the worker does; (array of the good ones, how many failed)."""
    arrays, bad = [], 0
    for p in paths:
        try:
            arrays.append(decode(p, cfg.preprocess, geometry))
        except ImageError:
            bad += 1
    if not arrays:
        if allow_none:
            return np.zeros((0,), np.float32), bad
        raise InputError("none of the calibration images could be decoded")
    return normalize(np.stack(arrays), cfg.preprocess, dtype), bad


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


def convert(cfg: RunConfig, input_name: str, output_name: str, calibration: np.ndarray,
            input_type: str = INPUT_TYPE, output_type: str = OUTPUT_TYPE) -> bytes:
    """Full-integer post-training quantization; the batch dimension stays as the graph has it."""
    from .session import import_tf
    tf = import_tf()

    def representative() -> Iterator[list[np.ndarray]]:
        for i in range(len(calibration)):
            yield [calibration[i:i + 1]]

    conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        cfg.model.path, [input_name.split(":")[0]], [output_name.split(":")[0]])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = getattr(tf, input_type)
    conv.inference_output_type = getattr(tf, output_type)
    try:
        with quiet_stderr():
            return conv.convert()
    except Exception as exc:  # ConverterError: an op with no int8 kernel, and such
        text = " ".join(str(exc).split())
        raise ModelError(f"cannot quantize {cfg.model.path}: {text[:300]}") from None


def verify(fp32: Any, int8: Any, cfg: RunConfig, check: list[str], source: str) -> Verification:
    """Both models on the same decoded check images; top-1 agreement and largest score difference."""
    info = fp32.info
    geometry = Geometry(info.height, info.width, info.channels)
    outs_a, outs_b, bad = [], [], 0
    for s in range(0, len(check), VERIFY_BATCH):  # batches: memory stays flat for large images
        x32, failed = _decoded(check[s:s + VERIFY_BATCH], cfg, geometry, fp32.input_dtype, allow_none=True)
        x8, _ = _decoded(check[s:s + VERIFY_BATCH], cfg, geometry, int8.input_dtype, allow_none=True)
        bad += failed
        if len(x32):
            outs_a.append(np.asarray(fp32.infer(x32)).reshape(len(x32), -1))
            outs_b.append(np.asarray(int8.infer(x8)).reshape(len(x8), -1))
    if not outs_a:
        raise InputError("none of the check images could be decoded")
    a, b = np.concatenate(outs_a), np.concatenate(outs_b)
    if info.output_kind == "class_id":
        ids_a, ids_b, diff = a[:, 0], b[:, 0], None
    else:
        ids_a, ids_b = a.argmax(1), b.argmax(1)
        diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    agreeing = int(np.sum(ids_a == ids_b))
    return Verification(images=len(a), agreement=agreeing / len(a), agreeing=agreeing, max_score_diff=diff,
                        source=source, skipped=bad)


def _card(cfg: RunConfig, output: str, card: str, int8: Any, calib: int, ver: Verification,
          source_sha: str, size: int) -> dict[str, Any]:
    pre = cfg.to_dict()["preprocess"]
    pre.pop("decode", None)  # how far a run may shrink large images is the run's choice, not the model's
    pre["size"] = [int8.info.height, int8.info.width]
    model: dict[str, Any] = {"input": int8.info.input_name, "output": int8.info.output_name}
    if cfg.model.labels:  # relative to the card, even above its folder: model, card and labels move together
        model["labels"] = os.path.relpath(cfg.model.labels, os.path.dirname(os.path.abspath(card)))
    x, y = int8.tensors
    return {
        "name": os.path.splitext(os.path.basename(output))[0],
        "description": f"int8 post-training quantization of {os.path.basename(cfg.model.path)} "
                       f"(compss-infer quantize)",
        "model": model,
        "preprocess": pre,
        "tensors": {x.name: str(x).split(" ", 1)[1], y.name: str(y).split(" ", 1)[1]},
        "quantization": {
            "weights": "int8", "activations": "int8",
            "input": {"dtype": x.dtype, "scale": x.scale, "zero_point": x.zero_point},
            "output": {"dtype": y.dtype, "scale": y.scale, "zero_point": y.zero_point},
            "calibration_images": calib,
        },
        "verification": {"check_images": ver.images, "source": _portable(ver.source, card),
                         "top1_agreement": round(ver.agreement, 4),
                         "max_score_difference": None if ver.max_score_diff is None else round(ver.max_score_diff, 5)},
        "source": {"model": os.path.basename(cfg.model.path), "sha256": source_sha},
        "bytes": size,
    }


def _portable(source: str, card: str) -> str:
    """``--check /abs/dir`` -> relative to the card's folder, so rebuilt cards match on any checkout."""
    if source.startswith("--check "):
        return "--check " + os.path.relpath(source[len("--check "):], os.path.dirname(os.path.abspath(card)))
    return source


def quantize_model(cfg: RunConfig, output: str, samples: int = DEFAULT_SAMPLES,
                   min_agreement: float = DEFAULT_MIN_AGREEMENT, check_dir: str | None = None,
                   overwrite: bool = False, progress: Any = None) -> QuantizeResult:
    """Convert, verify, and write ``output`` + its card; raises AgreementTooLow (exit 1) when it disagrees."""
    from .backends.litert import LiteRTPredictor
    from .backends.tf_graph import GraphPredictor
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

    spec = WorkerSpec(model=cfg.model, preprocess=cfg.preprocess, session=cfg.session, default_threads=None)
    data = read_model_bytes(cfg.model.path)
    fp32 = GraphPredictor(spec, data)
    try:
        info = fp32.info
        if info.takes_paths or info.input_kind not in ("image", "flat") or info.input_dtype not in ("float32",):
            raise ModelError(f"quantize needs a float32 image-tensor input, {info.input_name} is "
                             f"{info.input_dtype} {info.input_kind}")
        geometry = Geometry(info.height, info.width, info.channels)
        calib, bad = _decoded(calib_paths, cfg, geometry, np.dtype(np.float32))
        say(f"calibrating on {len(calib)} images" + (f" ({bad} could not be decoded)" if bad else ""))
        if info.input_kind == "flat":
            calib = calib.reshape(len(calib), -1)
        blob = convert(cfg, info.input_name, info.output_name, calib)
        int8_spec = replace(spec, model=replace(cfg.model, path=output, input=None, output=None))
        int8 = LiteRTPredictor(int8_spec, blob)
        try:
            source = f"--check {check_dir}" if check_dir else "held-out calibration images"
            say(f"checking on {len(check_paths)} images ({source})")
            ver = verify(fp32, int8, cfg, check_paths, source)
            if ver.agreement < min_agreement:
                raise AgreementTooLow(f"int8 model not written: {ver.line()}; below --min-agreement "
                                      f"{min_agreement:g}")
            doc = _card(cfg, output, card, int8, len(calib), ver, _sha256(cfg.model.path), len(blob))
            x, y = int8.tensors
        finally:
            int8.close()
    finally:
        fp32.close()
    write_bytes(output, blob)
    with atomic_open(card, "w", encoding="utf-8") as fh:
        fh.write("# Model card written by compss-infer quantize\n")
        yaml.safe_dump(doc, fh, sort_keys=False)
    return QuantizeResult(output=output, card=card, source_bytes=len(data), output_bytes=len(blob),
                          calibration_images=len(calib), verification=ver,
                          input={"name": x.name, "dtype": x.dtype, "scale": x.scale, "zero_point": x.zero_point},
                          output_tensor={"name": y.name, "dtype": y.dtype})
