"""``compss-infer inspect MODEL [--json]``: inputs, candidate outputs, op histogram, size, batch
dimension and the safety audit's verdict of a frozen graph (.pb or .pbtxt); for a LiteRT model
(.tflite): tensors with their quantization, ops, batch dimension and the audit's verdict."""
from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("inspect", help="describe a model (tensors, ops, safety)", description=__doc__)
    p.add_argument("model", metavar="MODEL", help="frozen GraphDef (.pb or .pbtxt) or LiteRT model (.tflite)")
    p.add_argument("--json", action="store_true", help="print the facts as JSON")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..model.files import check_model_path
    check_model_path(args.model, "MODEL")
    from ..model.checkpoint import looks_like_checkpoint
    if looks_like_checkpoint(args.model):
        from ..core.errors import ModelError
        raise ModelError(f"MODEL {args.model} is a TF1 checkpoint; inspect reads frozen graphs: "
                         f"compss-infer freeze {args.model} --output MODEL.pb, then inspect MODEL.pb")
    from ..model.formats import TFLITE, model_format
    if model_format(args.model) == TFLITE:
        from ..model.tflite_inspect import format_tflite_text as format_text, inspect_tflite as inspect_model
    else:
        from ..model.inspection import format_text, inspect_model
    info = inspect_model(args.model)
    print(json.dumps(info.to_dict(), indent=2) if args.json else format_text(info))
    return 0
