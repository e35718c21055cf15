"""Accuracy against ground truth: top-1, top-k, per-class precision/recall, confusion matrix.

Truth comes from a CSV (``path,class_id``, paths as they appear in the results) or from folder
names (``images/<class>/...``) mapped to ids through the model's labels file.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from ..core.errors import ConfigError


def load_truth_csv(path: str) -> dict[str, int]:
    """``path,class_id`` rows (a header row and a byte-order mark are optional).

    A path listed twice with different classes is refused: which one is true cannot be told.
    """
    truth: dict[str, int] = {}
    first_line: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
            for n, row in enumerate(csv.reader(fh), 1):
                if not row or (n == 1 and [c.strip() for c in row[:2]] == ["path", "class_id"]):
                    continue
                if len(row) < 2:
                    raise ConfigError(f"run.truth {path} line {n}: expected path,class_id")
                try:
                    cid = int(row[1])
                except ValueError:
                    raise ConfigError(f"run.truth {path} line {n}: class_id {row[1]!r} is not an integer") from None
                if row[0] in truth and truth[row[0]] != cid:
                    raise ConfigError(f"run.truth {path} line {n}: {row[0]!r} is class {cid} here but class "
                                      f"{truth[row[0]]} on line {first_line[row[0]]}")
                truth[row[0]] = cid
                first_line.setdefault(row[0], n)
    except OSError as exc:
        raise ConfigError(f"run.truth: cannot read {path}: {exc.strerror}") from None
    return truth


class FolderTruth:
    """Truth from ``<class>/...`` folder names: a labels line (-> its class) or a class id.

    Folder names that are neither are counted, so the run can warn about them.
    """

    def __init__(self, labels: Sequence[str] | None, offset: int = 0, num_classes: int | None = None):
        ids: dict[str, list[int]] = {}
        for i, name in enumerate(labels or []):
            ids.setdefault(name, []).append(i + offset)
        self._ids = {name: found[0] for name, found in ids.items()}
        # folder names that could mean two classes: a label on two lines, or a label that is another class's id
        self.ambiguous: dict[str, list[int]] = {name: found for name, found in ids.items() if len(found) > 1}
        self._twice = set(self.ambiguous)
        for name, found in ids.items():
            if name.isascii() and name.isdigit() and len(found) == 1 and int(name) != found[0]:
                self.ambiguous[name] = [found[0], int(name)]
        self.num_classes = num_classes
        self.unmatched: Counter = Counter()  # folder name -> images under it

    def check_folders(self, listed: Iterable[str]) -> None:
        """Refuse (before any work) when an image sits under a folder name that names two classes."""
        if not self.ambiguous:
            return
        found: list[str] = []
        for path in listed:
            head = path.replace("\\", "/").split("/", 1)
            if len(head) == 2 and head[0] in self.ambiguous and head[0] not in found:
                found.append(head[0])
        if not found:
            return
        parts = []
        for name in found[:3]:
            ids = self.ambiguous[name]
            if name in self._twice:
                parts.append(f"{name!r} is the label of classes {' and '.join(str(i) for i in ids)}")
            else:
                parts.append(f"{name!r} is the label of class {ids[0]} and also class id {ids[1]}")
        more = f"; and {len(found) - 3} more" if len(found) > 3 else ""
        twice = [name for name in found if name in self._twice]
        rename = f"name such folders by class id (e.g. {twice[0]}/ -> {self.ambiguous[twice[0]][0]}/) or " if twice else ""
        raise ConfigError(f"--truth-from-folders: folder names that name two classes: {'; '.join(parts)}{more}; "
                          f"{rename}give --truth CSV with path,class_id")

    def _lookup(self, name: str) -> int | None:
        if name in self._ids:
            return self._ids[name]
        if name.isascii() and name.isdigit():
            cid = int(name)
            if self.num_classes is None or cid < self.num_classes:
                return cid
        return None

    def get(self, listed: str, default: Any = None) -> int | None:
        head = listed.replace("\\", "/").split("/", 1)
        if len(head) < 2:
            return default
        cid = self._lookup(head[0])
        if cid is None:
            self.unmatched[head[0]] += 1
            return default
        return cid


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
    seen: int = 0  # every result row, with or without truth
    first_path: str | None = None

    def add(self, path: str, predicted: int | None, topk: Sequence[int] | None) -> None:
        self.seen += 1
        if self.first_path is None:
            self.first_path = path
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
        self.add_arrays(true, predicted, topk, failed, paths[0] if len(paths) else None)

    def add_arrays(self, true: Any, predicted: Any, topk: Any, failed: Any, first_path: str | None) -> None:
        """A chunk whose true class ids are known already (-1: none), e.g. from tar samples' .cls members."""
        import numpy as np
        true = np.asarray(true, np.int64)
        self.seen += len(true)
        if self.first_path is None and first_path is not None:
            self.first_path = first_path
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

    def coverage(self) -> str:
        """``accuracy 0.95 on 10 of 20 images (10 without truth)``: what the accuracy is over."""
        acc = f"{self.correct / self.labelled:.4f}" if self.labelled else "n/a"
        line = f"accuracy {acc} on {self.labelled} of {self.seen} images"
        missing = self.seen - self.labelled
        return line + (f" ({missing} without truth)" if missing else "")

    def warnings(self) -> list[str]:
        """One line per problem with the truth: nothing matched, folder names that are not classes."""
        out = []
        unmatched = getattr(self.truth, "unmatched", None)
        if unmatched:
            names = ", ".join(repr(n) for n, _ in unmatched.most_common(3))
            more = f" and {len(unmatched) - 3} more" if len(unmatched) > 3 else ""
            out.append(f"--truth-from-folders: {sum(unmatched.values())} image(s) under folders that are neither "
                       f"class ids nor labels: {names}{more}")
        elif self.seen and not self.labelled and self.truth == "cls":
            out.append("--truth-from cls: no sample has a readable .cls member (an integer class id)")
        elif self.seen and not self.labelled:
            sample = next(iter(self.truth), None) if isinstance(self.truth, dict) else None
            shown = f": result path {self.first_path!r} vs truth path {sample!r}" if sample is not None else ""
            out.append(f"no result matched the ground truth{shown}")
        return out

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
            "images": self.seen,
            "without_truth": self.seen - self.labelled,
            "coverage": self.coverage(),
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
