"""``compss-infer freeze SRC --output MODEL.pb``: freeze a Keras file (.keras, .h5), a SavedModel
directory or a TF1 checkpoint (a prefix such as dir/model.ckpt-49, its .meta file, or a training
folder with a 'checkpoint' index file: its newest entry) into a frozen GraphDef plus a model card
(MODEL.yaml: tensor names, shapes, dtypes and the preprocessing that is known), after checking that
the frozen graph reproduces the source's outputs on a random batch."""
from __future__ import annotations

import argparse
from typing import Any

from ..core.errors import InputError


def register(sub: Any) -> None:
    p = sub.add_parser("freeze", help="freeze a Keras model, SavedModel or TF1 checkpoint into a .pb + model card",
                       description=__doc__)
    p.add_argument("src", metavar="SRC", help="Keras file (.keras, .h5), SavedModel directory, or TF1 checkpoint "
                                              "(prefix, .meta, or folder with a 'checkpoint' file)")
    p.add_argument("--output", required=True, metavar="MODEL.pb", help="frozen graph to write (.pb or .pbtxt)")
    p.add_argument("--input-name", default=None, metavar="NAME",
                   help="Keras/SavedModel: the input placeholder's name (default images); "
                        "checkpoint: the input tensor (default: signature_def, 'inputs' collection, detection)")
    p.add_argument("--output-name", default=None, metavar="NAME",
                   help="Keras/SavedModel: the output node's name (default probs)")
    p.add_argument("--output-nodes", default=None, metavar="A,B",
                   help="checkpoint: output node(s) to keep (default: signature_def, 'outputs' collection, detection)")
    p.add_argument("--constant", action="append", default=[], metavar="NAME=VALUE",
                   help="checkpoint: turn placeholder NAME into a constant (repeatable), e.g. keep_prob=1.0")
    p.add_argument("--batch", default="dynamic", metavar="dynamic|N",
                   help="Keras/SavedModel: batch dimension (default dynamic)")
    p.add_argument("--tolerance", type=float, default=1e-5, metavar="TOL",
                   help="largest accepted difference from the source, relative to max(1, |output|) (default 1e-5)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model and card")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..model.freeze import check_source, freeze_checkpoint, freeze_model, parse_batch, parse_constants
    from ..model.checkpoint import looks_like_checkpoint
    if looks_like_checkpoint(args.src):
        if args.output_name or args.batch != "dynamic":
            raise InputError("--output-name and --batch are for Keras/SavedModel sources; a checkpoint takes "
                             "--output-nodes, and its graph fixes the batch")
        nodes = [n.strip() for n in args.output_nodes.split(",") if n.strip()] if args.output_nodes else None
        if args.output_nodes is not None and not nodes:
            raise InputError(f"--output-nodes {args.output_nodes!r}: expected node names, comma-separated")
        r = freeze_checkpoint(args.src, args.output, args.input_name, nodes, parse_constants(args.constant),
                              args.tolerance, args.overwrite)
    else:
        check_source(args.src)  # not found / not a model: said first
        if args.output_nodes or args.constant:
            raise InputError(f"--output-nodes and --constant are for TF1 checkpoints; {args.src} is not one "
                             f"(use --output-name)")
        batch = parse_batch(args.batch)
        r = freeze_model(args.src, args.output, args.input_name or "images", args.output_name or "probs", batch,
                         args.tolerance, args.overwrite)
    print(f"froze {args.src} -> {r.output} ({r.bytes:,} bytes, {r.node_count} nodes)")
    print(f"  input  {r.input} {r.input_desc}")
    print(f"  output {r.output_tensor} {r.output_desc}")
    for note in r.notes:
        print(f"  {note}")
    print(f"  verified against the source: {r.check}")
    kept = f" (kept {', '.join(r.kept_from_card)} from the previous card)" if r.kept_from_card else ""
    print(f"  model card {r.card}{kept}")
    return 0
