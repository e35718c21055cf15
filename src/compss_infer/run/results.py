"""Results files: one row per input image, in input order, written atomically.

CSV header: ``path,class_id,score,label,error`` (+ ``topk_ids,topk_scores`` with --top-k K>1).
JSONL: the same keys per line (null for empty; top-k as lists).  The file is written under a
temporary name in the same folder, fsynced and renamed, so readers never see half a file.
"""
from __future__ import annotations

import base64
import csv
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from ..core.atomic import atomic_open, write_atomically
from ..core.errors import InputError
from .outpaths import journal_dir, journal_exists

CSV_COLUMNS = ["path", "class_id", "score", "label", "error"]
TOPK_COLUMNS = ["topk_ids", "topk_scores"]
FORMATS_BY_EXTENSION = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


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
    raise InputError(f"--output {output}: cannot tell the format from the extension; use .csv/.jsonl/.parquet or --format")


def fmt_score(value: float | None) -> str:
    """Scores are written with 6 significant digits: stable across runs, batchings and resumes."""
    return "" if value is None else format(value, ".6g")


def round_score(value: float | None) -> float | None:
    return None if value is None else float(fmt_score(value))


def header_cells(top_k: int) -> list[str]:
    return CSV_COLUMNS + (TOPK_COLUMNS if top_k > 1 else [])


def header_bytes(fmt: str, top_k: int) -> bytes:
    """What a results file starts with before its rows (the CSV header line; nothing for JSONL)."""
    return (",".join(header_cells(top_k)) + "\n").encode() if fmt == "csv" else b""


# Python's csv writer quotes a field holding the delimiter, a quote or "\n", but leaves a bare CR
# (and the other line breaks of str.splitlines) in place, so a reader splits the row there.
_CSV_QUOTE = re.compile('[,"\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]')
_SURROGATE = re.compile("[\ud800-\udfff]")
# json.dumps escapes the control characters but leaves NEL, U+2028 and U+2029, at which
# str.splitlines() (and JavaScript before ES2019) breaks a line: written as escapes instead.
_JSON_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
_JSONL_RARE = re.compile("[\ud800-\udfff\x85\u2028\u2029]")


def csv_cell(text: str) -> str:
    """One CSV field: as ``csv.writer`` (QUOTE_MINIMAL) writes it, plus quotes around any line break."""
    return '"' + text.replace('"', '""') + '"' if _CSV_QUOTE.search(text) else text


def raw_name(text: str) -> bytes:
    """The bytes a name stands for (a name that is not UTF-8 holds them as surrogate escapes)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _valid_text(text: str) -> str:
    return raw_name(text).decode("utf-8", "replace") if _SURROGATE.search(text) else text


class CsvWriter:
    def __init__(self, fh: Any, top_k: int, header: bool = True):
        self._fh = fh
        self._w = csv.writer(fh, lineterminator="\n")
        self._topk = top_k > 1
        if header:
            self._w.writerow(header_cells(top_k))

    def write(self, row: Row) -> None:
        cells = [row.path, "" if row.class_id is None else str(row.class_id), fmt_score(row.score),
                 row.label or "", row.error or ""]
        if self._topk:
            cells.append(" ".join(str(i) for i in row.topk_ids or []))
            cells.append(" ".join(fmt_score(s) for s in row.topk_scores or []))
        if "".join(cells).isprintable():  # no line break anywhere: the csv module, as always
            self._w.writerow(cells)
        else:  # rare (a CR, U+2028, ... in a name): quote those cells too
            self._fh.write(",".join(map(csv_cell, cells)) + "\n")


class JsonlWriter:
    """One JSON object per line, always valid UTF-8: a path that is not (a file name made of other
    bytes) is written with U+FFFD for the bytes UTF-8 cannot show, and its exact bytes, base64, in
    ``path_bytes`` (a key only such rows have).  Every line break inside a value is an escape."""

    def __init__(self, fh: Any, top_k: int, header: bool = True):
        self._fh = fh
        self._topk = top_k > 1

    def write(self, row: Row) -> None:
        d: dict[str, Any] = {"path": row.path, "class_id": row.class_id, "score": round_score(row.score),
                             "label": row.label, "error": row.error}
        if self._topk:
            d["topk_ids"] = row.topk_ids
            d["topk_scores"] = None if row.topk_scores is None else [round_score(s) for s in row.topk_scores]
        line = json.dumps(d, ensure_ascii=False)
        if _JSONL_RARE.search(line):  # rare: keep the line valid UTF-8, one line, and the name lossless
            if _SURROGATE.search(row.path):
                d["path_bytes"] = base64.b64encode(raw_name(row.path)).decode("ascii")
            d.update((k, _valid_text(v)) for k, v in list(d.items()) if isinstance(v, str))
            line = json.dumps(d, ensure_ascii=False).translate(_JSON_BREAKS)
        self._fh.write(line + "\n")


WRITERS = {"csv": CsvWriter, "jsonl": JsonlWriter}


def check_output(output: str, overwrite: bool, resume: bool) -> None:
    """Refuse to clobber: an existing results file needs --overwrite (exit 2); a directory, device,
    FIFO or socket is never replaced, even with --overwrite.

    Each hint names a command that works: with an interrupted run's journal beside the old results
    (a run started with --overwrite and stopped), that is ``--resume --overwrite``.
    """
    if is_sharded(output):
        if os.path.exists(os.path.join(output, MANIFEST)) and not overwrite:
            if journal_exists(output):
                raise InputError(f"output exists: {output}{MANIFEST}, and an interrupted run's journal is at "
                                 f"{journal_dir(output)}: use --resume --overwrite to continue that run and replace "
                                 "the parts, or --overwrite to start afresh")
            raise InputError(f"output exists: {output}{MANIFEST} (use --overwrite to replace it)")
        if os.path.exists(output.rstrip("/" + os.sep)) and not os.path.isdir(output.rstrip("/" + os.sep)):
            raise InputError(f"--output {output}: exists and is not a folder")
        return
    refuse_special(output)
    if os.path.exists(output) and not overwrite:
        if journal_exists(output):
            raise InputError(f"output exists: {output}, and an interrupted run's journal is at {journal_dir(output)}: "
                             "use --resume --overwrite to continue that run and replace the file, "
                             "or --overwrite to start afresh")
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


def is_sharded(output: str) -> bool:
    """``--output DIR/`` (a trailing slash) asks for a folder of parts (with run.shard_rows)."""
    return output.endswith(("/", os.sep))


class ShardedWriter:
    """``part-00000.<fmt>``, ... of ``shard_rows`` rows each, in input order, then ``manifest.json``.

    Each part is written atomically (complete, or not there) as soon as it is full, so a consumer
    can read parts while later ones are written; the manifest, written last, lists them all.  Every
    CSV part starts with the header, so each is a results file on its own.
    """

    def __init__(self, folder: str, fmt: str, top_k: int, shard_rows: int):
        self.folder, self.fmt, self.shard_rows = folder, fmt, shard_rows
        self.header = header_bytes(fmt, top_k)
        self.parts: list[dict[str, Any]] = []
        self._cm: Any = None
        self._fh: Any = None
        self._rows = 0
        self._bytes = 0
        os.makedirs(folder, exist_ok=True)

    def _open(self) -> None:
        name = f"part-{len(self.parts):05d}.{self.fmt}"
        self._cm = atomic_open(os.path.join(self.folder, name), "wb")
        self._fh = self._cm.__enter__()
        self._fh.write(self.header)
        self.parts.append({"name": name, "rows": 0})
        self._rows, self._bytes = 0, len(self.header)

    def _close_part(self) -> None:
        self.parts[-1].update(rows=self._rows, bytes=self._bytes)
        cm, self._cm, self._fh = self._cm, None, None
        cm.__exit__(None, None, None)

    def write(self, rows: bytes, ends: Any) -> None:
        """``rows``: whole rows; ``ends``: the byte end of each."""
        pos, i, n = 0, 0, len(ends)
        while i < n:
            if self._fh is None:
                self._open()
            take = min(n - i, self.shard_rows - self._rows)
            stop = int(ends[i + take - 1])
            self._fh.write(rows[pos:stop])
            self._bytes += stop - pos
            self._rows += take
            pos, i = stop, i + take
            if self._rows == self.shard_rows:
                self._close_part()

    def close(self, images: int) -> str:
        if self._fh is not None:
            self._close_part()
        manifest = {"format": self.fmt, "shard_rows": self.shard_rows, "images": images, "parts": self.parts}
        path = os.path.join(self.folder, MANIFEST)
        write_json(path, manifest)
        keep = {p["name"] for p in self.parts} | {MANIFEST}
        for name in os.listdir(self.folder):  # parts of an earlier, larger run (--overwrite)
            if name.startswith("part-") and name not in keep:
                os.unlink(os.path.join(self.folder, name))
        return path

    def abort(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(RuntimeError, RuntimeError("aborted"), None)
            self._cm = self._fh = None


MANIFEST = "manifest.json"


def write_rows(path: str, fmt: str, top_k: int, rows: Iterable[Row]) -> None:
    def body(fh: Any) -> None:
        writer = WRITERS[fmt](fh, top_k)
        for row in rows:
            writer.write(row)
    write_atomically(path, body)


def write_json(path: str, data: Any) -> None:
    """A side file (summary, manifest): written over the name, never through a link planted there."""
    write_atomically(path, lambda fh: (json.dump(data, fh, indent=2, sort_keys=False, default=str), fh.write("\n")),
                     follow=False)


def read_rows(path: str) -> Iterator[dict[str, Any]]:
    """Read a results file back (CSV or JSONL, or a sharded folder's parts) as dicts; for reports and tests."""
    if os.path.isdir(path):
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as fh:
            manifest = json.load(fh)
        for part in manifest["parts"]:
            yield from read_rows(os.path.join(path, part["name"]))
        return
    fmt = format_for(path, None)
    if fmt == "parquet":  # typed values, as JSONL gives them
        import pyarrow.parquet as pq
        yield from pq.read_table(path).to_pylist()
        return
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
