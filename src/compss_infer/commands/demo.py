"""``compss-infer demo``: classify the bundled held-out digits with the three demo models.

Runs the tensor-input CNN, its image-path twin (decoding inside the graph) and its int8 quantization
(``.tflite``, LiteRT) with the local engine, prints each one's accuracy against the shipped ground
truth, checks that the two fp32 models agree on every image and reports how often the int8 model
agrees with them.  Exit 0 when all three reach 0.95 and the fp32 twins agree, 1 otherwise.
"""
from __future__ import annotations

import argparse
import csv
import os
from typing import Any

from ..core.errors import InputError

VARIANTS = ("digits_cnn.pb", "digits_cnn_path.pb", "digits_cnn_int8.tflite")
MIN_ACCURACY = 0.95


def find_root(explicit: str | None) -> str:
    """The project folder holding models/ and images/: --root, the current folder, or the source tree."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [explicit] if explicit else [os.getcwd(), os.path.normpath(os.path.join(here, "..", "..", ".."))]
    for root in candidates:
        if root and all(os.path.isfile(os.path.join(root, "models", v)) for v in VARIANTS) \
                and os.path.isdir(os.path.join(root, "images", "digits")):
            return os.path.abspath(root)
    raise InputError("cannot find the demo files (models/digits_cnn*.pb, images/digits/): "
                     "run from the project folder or pass --root")


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the bundled demo (fp32 and int8 models, accuracy, agreement)",
                       description=__doc__)
    p.add_argument("--root", help="project folder with models/ and images/ (default: found automatically)")
    p.add_argument("--output-dir", help="where results go (default: ROOT/results/demo)")
    p.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..run.config import build_config
    from ..run.runner import run
    from .run import print_summary

    root = find_root(args.root)
    out_dir = os.path.abspath(args.output_dir or os.path.join(root, "results", "demo"))
    images = os.path.join(root, "images", "digits")
    predictions: dict[str, list[str]] = {}
    ok = True
    for variant in VARIANTS:
        output = os.path.join(out_dir, os.path.splitext(variant)[0] + ".csv")
        flags: dict[str, Any] = {
            "model": {"path": os.path.join(root, "models", variant)},
            "run": {"images": images, "truth": os.path.join(images, "truth.csv"), "output": output,
                    "overwrite": True, "engine": "local", "progress": not args.no_progress},
        }
        if args.workers:
            flags["run"]["workers"] = args.workers
        summary = run(build_config(None, flags))
        print_summary(summary)
        acc = summary.accuracy or 0.0
        verdict = "ok" if acc >= MIN_ACCURACY and summary.failed == 0 else f"BELOW {MIN_ACCURACY}"
        print(f"  {variant}: accuracy {acc:.4f} on {summary.images} held-out images ({verdict})")
        ok &= acc >= MIN_ACCURACY and summary.failed == 0
        with open(output, newline="", encoding="utf-8") as fh:
            predictions[variant] = [row["class_id"] for row in csv.DictReader(fh)]
    a, b, q = (predictions[v] for v in VARIANTS)
    disagree = sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))
    print(f"  the two fp32 models agree on {len(a) - disagree}/{len(a)} images"
          + ("" if not disagree else f" ({disagree} differ)"))
    same = sum(x == y for x, y in zip(a, q))
    print(f"  the int8 model agrees with fp32 on {same}/{len(a)} images")
    ok &= disagree == 0
    print("demo: " + ("PASS" if ok else "FAIL") + f" (results in {out_dir})")
    return 0 if ok else 1
