"""``compss-infer optimize MODEL --output OUT``: remove training-only and unused nodes, fold constants
and batch norms (TensorFlow's optimize_for_inference and Grappler), print op counts before and after,
and write OUT (.pb or .pbtxt) only if its outputs match MODEL's on a random batch."""
from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("optimize", help="optimize a frozen graph for inference (checked)", description=__doc__)
    p.add_argument("model", metavar="MODEL", help="frozen GraphDef (.pb or .pbtxt)")
    p.add_argument("--output", required=True, metavar="OUT", help="optimized graph to write (.pb or .pbtxt)")
    p.add_argument("--input-name", metavar="NAME", help="input tensor (default: model card, else auto-detected)")
    p.add_argument("--output-name", metavar="NAME", help="output tensor (default: model card, else auto-detected)")
    p.add_argument("--tolerance", type=float, default=1e-5, metavar="TOL",
                   help="largest accepted difference, relative to max(1, |output|) (default 1e-5)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..model.optimize import format_op_table, optimize_model
    r = optimize_model(args.model, args.output, args.input_name, args.output_name, args.tolerance, args.overwrite)
    print(f"optimized {args.model} -> {r.output}: {r.nodes_before} -> {r.nodes_after} nodes, "
          f"{r.bytes_before:,} -> {r.bytes_after:,} bytes ({r.input} -> {r.output_tensor})")
    print(format_op_table(r.ops_before, r.ops_after))
    print(f"  verified against {args.model}: {r.check}")
    if r.card:
        print(f"  model card copied to {r.card}")
    return 0
