"""``compss-infer quantize MODEL.pb --calibration DIR | --calibration-list FILE --output OUT.tflite``:
int8 post-training quantization with TensorFlow's converter, calibrated on images decoded exactly as
``run`` decodes them, then checked against the fp32 graph on images never calibrated on (``--check DIR``,
else every 5th calibration image; fewer than 300 are topped up with augmented views of them).  Writes
OUT.tflite and its model card OUT.yaml only when the 95% lower bound of the top-1 agreement reaches
--min-agreement; when full int8 falls short, the noisiest ops are kept in float, a few at a time, until
it does (--no-fallback: full int8 or nothing).  Exit 1 with the figures when no model passes; exit 2
before any work when the check set is too small to show --min-agreement.  Tensor names and
preprocessing come from the same layers as ``run``: defaults, model card, --config, flags, --set."""
from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    from ..model.quantize import DEFAULT_MIN_AGREEMENT, DEFAULT_SAMPLES
    p = sub.add_parser("quantize", help="int8-quantize a frozen graph into a checked .tflite model",
                       description=__doc__)
    p.add_argument("model", metavar="MODEL.pb", help="frozen fp32 GraphDef (.pb or .pbtxt)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--calibration", metavar="DIR", help="folder of representative images (recursive)")
    src.add_argument("--calibration-list", metavar="FILE", help="file with one representative image path per line")
    p.add_argument("--output", required=True, metavar="OUT.tflite", help="the int8 model to write (card beside it)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, metavar="N",
                   help=f"calibration images used, spread over the set (default {DEFAULT_SAMPLES}, fewer if fewer are given)")
    p.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT, metavar="X",
                   help=f"least 95%% lower bound of the top-1 agreement with fp32 on the check images "
                        f"(default {DEFAULT_MIN_AGREEMENT})")
    p.add_argument("--no-fallback", action="store_true",
                   help="write full int8 or nothing: never keep ops in float to reach --min-agreement")
    p.add_argument("--check", metavar="DIR", help="images for the check (default: every 5th calibration image, held out)")
    p.add_argument("--config", metavar="CONFIG.yaml", help="YAML config (model and preprocess sections apply)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config key; the value is YAML (repeatable)")
    p.add_argument("--allow-unsafe-ops", action="store_true", help="load a source graph with file, Python or network ops")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT.tflite and its card")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..run.config import build_config
    from ..core.errors import ModelError
    from ..model.formats import TFLITE, model_format
    import os
    if not os.path.isfile(args.model):
        raise ModelError(f"model file not found: {args.model}")
    if model_format(args.model) == TFLITE:
        raise ModelError(f"{args.model} is already a .tflite model: quantize takes a frozen fp32 GraphDef")
    flags: dict[str, Any] = {"model": {"path": args.model}, "run": {}}
    if args.allow_unsafe_ops:
        flags["model"]["allow_unsafe_ops"] = True
    if args.calibration:
        flags["run"]["images"] = args.calibration
    else:
        flags["run"]["image_list"] = args.calibration_list
    cfg = build_config(args.config, flags, args.sets)
    from ..run.advice import check_quantize_source
    check_quantize_source(cfg)
    if args.calibration:  # the flag wins over a config's run.image_list
        cfg = _only(cfg, images=cfg.run.images)
    else:
        cfg = _only(cfg, image_list=cfg.run.image_list)
    from ..model.quantize import quantize_model
    quiet = getattr(args, "quiet", False)
    say = (lambda msg: None) if quiet else (lambda msg: print(f"compss-infer: {msg}", file=sys.stderr))
    r = quantize_model(cfg, args.output, samples=args.samples, min_agreement=args.min_agreement,
                       check_dir=args.check and os.path.abspath(args.check), overwrite=args.overwrite, progress=say,
                       fallback=not args.no_fallback)
    q = r.input
    kept = f", {len(r.float_ops)} ops kept in float" if r.float_ops else ""
    print(f"quantized {args.model} -> {r.output}: {r.source_bytes:,} -> {r.output_bytes:,} bytes, "
          f"int8 weights and activations{kept}, calibrated on {r.calibration_images} images")
    if r.float_ops:
        shown = ", ".join(str(f) for f in r.float_ops[:8]) + (f", ... ({len(r.float_ops)} in all)"
                                                              if len(r.float_ops) > 8 else "")
        sp = r.speed
        print(f"  kept in float: {shown}")
        print(f"  cost: {sp['written']:,.0f} images/s against {sp['full_int8']:,.0f} for full int8 "
              f"({sp['written'] / sp['full_int8']:.2f}x, model only, on this machine); full int8 would agree "
              f"{r.full_int8.agreement:.4f} (95% lower bound {r.full_int8.lower_bound:.4f})")
    print(f"  input {q['name']} {q['dtype']} (scale {q['scale']:.6g}, zero point {q['zero_point']}), "
          f"output {r.output_tensor['name']} {r.output_tensor['dtype']}")
    print(f"  checked against {args.model}: {r.verification.line()}")
    print(f"  model card {r.card}")
    return 0


def _only(cfg: Any, **run: Any) -> Any:
    """Keep exactly one calibration source: the one given on the command line."""
    from dataclasses import replace
    fields = {"images": None, "image_list": None, **run}
    return replace(cfg, run=replace(cfg.run, **fields))
