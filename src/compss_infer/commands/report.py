"""``compss-infer report RESULTS``: a task timeline, throughput over time and (with ground truth) a
confusion matrix of a finished run, as PNGs and one self-contained HTML page beside RESULTS.
Needs the plotting extra: pip install 'compss-infer[report]'."""
from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="plot a finished run (timeline, throughput, confusion) as HTML",
                       description=__doc__)
    p.add_argument("results", metavar="RESULTS", help="results file of a finished run (.csv or .jsonl)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..run.report import write_report
    files = write_report(args.results)
    print(f"report: {files.html}")
    for path in files.images.values():
        print(f"  {path}")
    review = files.review
    if review is not None and (review.failed_total or review.misclassified_total):
        print(f"  lists {review.failed_total} failed and {review.misclassified_total} misclassified image(s)")
    return 0
