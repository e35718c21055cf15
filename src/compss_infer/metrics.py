"""Accuracy against ground truth: top-1, top-k, per-class precision/recall, confusion matrix.

Truth comes from a CSV (``path,class_id``, paths as they appear in the results) or from folder
names (``images/<class>/...``) mapped to ids through the model's labels file.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import ConfigError


def load_truth_csv(path: str) -> dict[str, int]:
    """``path,class_id`` rows (a header row is optional)."""
    truth: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
            for n, row in enumerate(csv.reader(fh), 1):
                if not row or (n == 1 and row[:2] == ["path", "class_id"]):
                    continue
                if len(row) < 2:
                    raise ConfigError(f"run.truth {path} line {n}: expected path,class_id")
                try:
                    truth[row[0]] = int(row[1])
                except ValueError:
                    raise ConfigError(f"run.truth {path} line {n}: class_id {row[1]!r} is not an integer") from None
    except OSError as exc:
        raise ConfigError(f"run.truth: cannot read {path}: {exc.strerror}") from None
    return truth


class FolderTruth:
    """Truth from ``<class>/...`` folder names, through the labels file (name -> line number)."""

    def __init__(self, labels: Sequence[str] | None):
        if not labels:
            raise ConfigError("--truth-from-folders needs model.labels (folder names are looked up there)")
        self._ids = {name: i for i, name in enumerate(labels)}

    def get(self, listed: str, default: Any = None) -> int | None:
        head = listed.replace("\\", "/").split("/", 1)
        if len(head) < 2:
            return default
        return self._ids.get(head[0], default)


@dataclass
class Scorer:
    """Accumulates predictions against truth while the results are written."""

    truth: Any  # mapping-like with .get(path)
    top_k: int = 1
    labelled: int = 0
    correct: int = 0
    correct_k: int = 0
    failed_labelled: int = 0
    confusion: Counter = field(default_factory=Counter)  # (true, predicted) -> count

    def add(self, path: str, predicted: int | None, topk: Sequence[int] | None) -> None:
        true = self.truth.get(path)
        if true is None:
            return
        self.labelled += 1
        if predicted is None:
            self.failed_labelled += 1
            return
        self.confusion[(true, predicted)] += 1
        self.correct += int(predicted == true)
        if self.top_k > 1 and topk is not None:
            self.correct_k += int(true in topk)

    def add_many(self, paths: Sequence[str], predicted: Any, topk: Any, failed: Any) -> None:
        """``add`` for a whole chunk at once: numpy arrays of predictions, counted without a row object."""
        import numpy as np
        get = self.truth.get
        true = np.fromiter((-1 if (t := get(p)) is None else t for p in paths), np.int64, len(paths))
        labelled = true >= 0
        self.labelled += int(labelled.sum())
        self.failed_labelled += int((labelled & failed).sum())
        ok = labelled & ~failed
        t, p = true[ok], np.asarray(predicted, np.int64)[ok]
        self.correct += int((t == p).sum())
        if len(t):
            pairs, n = np.unique(np.stack([t, p], 1), axis=0, return_counts=True)
            for (a, b), c in zip(pairs.tolist(), n.tolist()):
                self.confusion[(a, b)] += c
        if self.top_k > 1 and topk is not None:
            self.correct_k += int((np.asarray(topk)[ok] == t[:, None]).any(axis=1).sum())

    def summary(self) -> dict[str, Any] | None:
        if not self.labelled:
            return None
        scored = self.labelled - self.failed_labelled
        classes = sorted({c for pair in self.confusion for c in pair})
        per_class = {}
        for c in classes:
            tp = self.confusion[(c, c)]
            predicted = sum(v for (t, p), v in self.confusion.items() if p == c)
            actual = sum(v for (t, p), v in self.confusion.items() if t == c)
            per_class[str(c)] = {"precision": round(tp / predicted, 6) if predicted else None,
                                 "recall": round(tp / actual, 6) if actual else None, "support": actual}
        out: dict[str, Any] = {
            "labelled": self.labelled,
            "failed": self.failed_labelled,
            "accuracy": round(self.correct / self.labelled, 6),
            "accuracy_of_classified": round(self.correct / scored, 6) if scored else None,
            "per_class": per_class,
            "confusion": {"classes": classes,
                          "matrix": [[self.confusion[(t, p)] for p in classes] for t in classes]},
        }
        if self.top_k > 1:
            out[f"top{self.top_k}_accuracy"] = round(self.correct_k / self.labelled, 6)
        return out
