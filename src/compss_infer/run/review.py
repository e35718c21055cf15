"""What to act on after a run: the failed images, the misclassified ones, the most frequent confusions.

Read back from a finished run's results file and summary for ``compss-infer report``.  The truth is
reloaded as the run loaded it (the ``--truth`` CSV, or the folder names through the labels file);
the confusions come from the summary, so they match its accuracy.  Lists are capped at
``MAX_LISTED`` rows each (the page must open); the counts are not.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import CompssInferError
from .results import read_rows

MAX_LISTED = 200
TOP_CONFUSIONS = 20


@dataclass
class Review:
    """The images a user should look at, in input order, and the confusions that cost the most."""

    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, error), the first MAX_LISTED
    failed_total: int = 0
    misclassified: list[tuple[str, int, int]] = field(default_factory=list)  # (path, true, predicted)
    misclassified_total: int = 0
    confusions: list[tuple[int, int, int]] = field(default_factory=list)  # (true, predicted, count)
    note: str | None = None  # why misclassified images could not be listed


def top_confusions(confusion: dict[str, Any] | None, n: int = TOP_CONFUSIONS) -> list[tuple[int, int, int]]:
    """The ``n`` largest off-diagonal cells of the summary's confusion matrix, most frequent first."""
    if not confusion:
        return []
    classes = confusion.get("classes") or []
    cells = [(t, p, c) for i, t in enumerate(classes) for j, p in enumerate(classes)
             if i != j and (c := confusion["matrix"][i][j])]
    return sorted(cells, key=lambda x: (-x[2], x[0], x[1]))[:n]


def _truth(summary: dict[str, Any]) -> tuple[Any, str | None]:
    """(mapping listed path -> true class id, or None; why not)."""
    from .labels import load_labels
    from .metrics import FolderTruth, load_truth_csv
    cfg = summary.get("config") or {}
    run, model = cfg.get("run") or {}, cfg.get("model") or {}
    try:
        if run.get("truth"):
            if not os.path.isfile(run["truth"]):
                return None, f"the ground truth {run['truth']} is gone: misclassified images cannot be listed"
            return load_truth_csv(run["truth"]), None
        if run.get("truth_from_folders"):
            labels = load_labels(model.get("labels")) if model.get("labels") else None
            return FolderTruth(labels, int(model.get("label_offset") or 0),
                               (summary.get("model") or {}).get("num_classes")), None
    except CompssInferError as exc:
        return None, f"the ground truth cannot be read again ({exc}): misclassified images are not listed"
    return None, None


def _class_id(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def review_run(results: str, summary: dict[str, Any]) -> Review:
    """Walk the results once: failed rows, and rows whose class differs from the truth."""
    review = Review(confusions=top_confusions((summary.get("accuracy") or {}).get("confusion")))
    truth, review.note = _truth(summary)
    for row in read_rows(results):
        path = row.get("path") or ""
        error = row.get("error")
        if error:
            review.failed_total += 1
            if len(review.failed) < MAX_LISTED:
                review.failed.append((path, error))
            continue
        if truth is None:
            continue
        true, predicted = truth.get(path), _class_id(row.get("class_id"))
        if true is None or predicted is None or true == predicted:
            continue
        review.misclassified_total += 1
        if len(review.misclassified) < MAX_LISTED:
            review.misclassified.append((path, true, predicted))
    return review
