"""Results files: one row per input image, in input order, written atomically.

CSV header: ``path,class_id,score,label,error`` (+ ``topk_ids,topk_scores`` with --top-k K>1).
JSONL: the same keys per line (null for empty; top-k as lists).  The file is written under a
temporary name in the same folder, fsynced and renamed, so readers never see half a file.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from .atomic import atomic_open
from .errors import InputError

CSV_COLUMNS = ["path", "class_id", "score", "label", "error"]
TOPK_COLUMNS = ["topk_ids", "topk_scores"]
FORMATS_BY_EXTENSION = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass
class Row:
    """One output row (values already final; None = empty)."""

    path: str
    class_id: int | None
    score: float | None
    label: str | None
    error: str | None
    topk_ids: list[int] | None = None
    topk_scores: list[float | None] | None = None


def format_for(output: str, explicit: str | None) -> str:
    if explicit:
        return explicit
    ext = os.path.splitext(output)[1].lower()
    if ext in FORMATS_BY_EXTENSION:
        return FORMATS_BY_EXTENSION[ext]
    raise InputError(f"--output {output}: cannot tell the format from the extension; use .csv/.jsonl or --format")


def fmt_score(value: float | None) -> str:
    """Scores are written with 6 significant digits: stable across runs, batchings and resumes."""
    return "" if value is None else format(value, ".6g")


def round_score(value: float | None) -> float | None:
    return None if value is None else float(fmt_score(value))


class CsvWriter:
    def __init__(self, fh: Any, top_k: int):
        self._w = csv.writer(fh, lineterminator="\n")
        self._topk = top_k > 1
        self._w.writerow(CSV_COLUMNS + (TOPK_COLUMNS if self._topk else []))

    def write(self, row: Row) -> None:
        cells = [row.path, "" if row.class_id is None else str(row.class_id), fmt_score(row.score),
                 row.label or "", row.error or ""]
        if self._topk:
            cells.append(" ".join(str(i) for i in row.topk_ids or []))
            cells.append(" ".join(fmt_score(s) for s in row.topk_scores or []))
        self._w.writerow(cells)


class JsonlWriter:
    def __init__(self, fh: Any, top_k: int):
        self._fh = fh
        self._topk = top_k > 1

    def write(self, row: Row) -> None:
        d: dict[str, Any] = {"path": row.path, "class_id": row.class_id, "score": round_score(row.score),
                             "label": row.label, "error": row.error}
        if self._topk:
            d["topk_ids"] = row.topk_ids
            d["topk_scores"] = None if row.topk_scores is None else [round_score(s) for s in row.topk_scores]
        self._fh.write(json.dumps(d, ensure_ascii=False) + "\n")


WRITERS = {"csv": CsvWriter, "jsonl": JsonlWriter}


def check_output(output: str, overwrite: bool, resume: bool) -> None:
    """Refuse to clobber: an existing results file needs --overwrite (exit 2); a directory, device,
    FIFO or socket is never replaced, even with --overwrite."""
    refuse_special(output)
    if os.path.exists(output) and not overwrite:
        hint = "the run already finished; " if resume else ""
        raise InputError(f"output exists: {output} ({hint}use --overwrite to replace it)")


def refuse_special(output: str) -> None:
    """An output that is a directory, device, FIFO or socket (links followed) is never written."""
    if os.path.isdir(output):
        raise InputError(f"--output {output}: is a directory")
    kind = special_file_kind(output)
    if kind:
        raise InputError(f"--output {output}: is a {kind}, not a regular file (never replaced, "
                         "even with --overwrite)")


def special_file_kind(path: str) -> str | None:
    """``character device``, ``FIFO``, ... for an existing non-regular file (links followed), else None."""
    import stat
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, name in ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return None


def write_atomically(path: str, writer: Any) -> None:
    """Call ``writer(fh)`` on a text file that replaces ``path`` only once complete."""
    with atomic_open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        writer(fh)


def write_rows(path: str, fmt: str, top_k: int, rows: Iterable[Row]) -> None:
    def body(fh: Any) -> None:
        writer = WRITERS[fmt](fh, top_k)
        for row in rows:
            writer.write(row)
    write_atomically(path, body)


def write_json(path: str, data: Any) -> None:
    write_atomically(path, lambda fh: (json.dump(data, fh, indent=2, sort_keys=False, default=str), fh.write("\n")))


def read_rows(path: str) -> Iterator[dict[str, Any]]:
    """Read a results file back (CSV or JSONL) as dicts; used by reports and tests."""
    fmt = format_for(path, None)
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        if fmt == "csv":
            yield from csv.DictReader(fh)
        else:
            for line in fh:
                yield json.loads(line)


def labels_from_file(path: str | None) -> Sequence[str] | None:
    """Line i names class i (kept for callers; the loader lives in labels.py with the offset and checks)."""
    from .labels import load_labels
    return load_labels(path)
