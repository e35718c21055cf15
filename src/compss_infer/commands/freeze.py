"""``compss-infer freeze SRC --output MODEL.pb``: freeze a Keras file (.keras, .h5) or a SavedModel
directory into a frozen GraphDef plus a model card (MODEL.yaml: tensor names, shapes, dtypes and the
preprocessing that is known), after checking that the frozen graph reproduces the source's outputs
on a random batch."""
from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("freeze", help="freeze a Keras model or SavedModel into a .pb + model card",
                       description=__doc__)
    p.add_argument("src", metavar="SRC", help="Keras file (.keras, .h5) or SavedModel directory")
    p.add_argument("--output", required=True, metavar="MODEL.pb", help="frozen graph to write (.pb or .pbtxt)")
    p.add_argument("--input-name", default="images", metavar="NAME", help="input placeholder name (default images)")
    p.add_argument("--output-name", default="probs", metavar="NAME", help="output node name (default probs)")
    p.add_argument("--batch", default="dynamic", metavar="dynamic|N", help="batch dimension (default dynamic)")
    p.add_argument("--tolerance", type=float, default=1e-5, metavar="TOL",
                   help="largest accepted difference from the source, relative to max(1, |output|) (default 1e-5)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model and card")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..freeze import freeze_model, parse_batch
    batch = parse_batch(args.batch)
    r = freeze_model(args.src, args.output, args.input_name, args.output_name, batch, args.tolerance, args.overwrite)
    print(f"froze {args.src} -> {r.output} ({r.bytes:,} bytes, {r.node_count} nodes)")
    print(f"  input  {r.input} {r.input_desc}")
    print(f"  output {r.output_tensor} {r.output_desc}")
    print(f"  verified against the source: {r.check}")
    kept = f" (kept {', '.join(r.kept_from_card)} from the previous card)" if r.kept_from_card else ""
    print(f"  model card {r.card}{kept}")
    return 0
