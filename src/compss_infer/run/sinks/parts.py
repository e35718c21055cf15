"""Results in parts, each a results file on its own (CSV parts start with the header), then
``manifest.json`` listing them, written last.

``RowParts``: ``part-00000.<fmt>`` ... of ``run.shard_rows`` rows each, in input order (file inputs).
``ShardParts``: one part per input tar shard, named after it (``00003.tar`` -> ``00003.csv``), written
atomically as soon as the shard's last chunk is journaled, so downstream jobs can start on finished
parts while the run goes on (shard to shard).
"""
from __future__ import annotations

import bisect
import json
import os
from typing import Any, Callable

from ..results import MANIFEST, write_json
from .base import FileSink


def _stale(folder: str, keep: set[str], pattern: Callable[[str], bool]) -> None:
    """Remove parts of an earlier run (--overwrite): names ``pattern`` matches or the old manifest listed."""
    listed: set[str] = set()
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as fh:
            listed = {p["name"] for p in json.load(fh).get("parts", []) if isinstance(p, dict) and "name" in p}
    except (OSError, ValueError, AttributeError):
        pass
    for name in os.listdir(folder):
        if name not in keep and (pattern(name) or name in listed) and os.path.isfile(os.path.join(folder, name)):
            os.unlink(os.path.join(folder, name))


class RowParts:
    """Parts of ``shard_rows`` rows each, in input order."""

    def __init__(self, folder: str, fmt: str, top_k: int, shard_rows: int):
        self.folder, self.fmt, self.top_k, self.shard_rows = folder, fmt, top_k, shard_rows
        self.parts: list[dict[str, Any]] = []
        self._part: FileSink | None = None
        os.makedirs(folder, exist_ok=True)

    def _open(self) -> FileSink:
        name = f"part-{len(self.parts):05d}.{self.fmt}"
        self._part = FileSink(os.path.join(self.folder, name), self.fmt, self.top_k, follow=False)
        self.parts.append({"name": name, "rows": 0})
        return self._part

    def _close_part(self) -> None:
        part, self._part = self._part, None
        assert part is not None
        part.close()
        self.parts[-1].update(rows=part.rows, bytes=part.bytes)

    def write(self, rows: bytes, count: int, ends: Any) -> None:
        """``rows``: whole rows; ``ends``: the byte end of each (CSV/JSONL)."""
        table = None
        if self.fmt == "parquet":
            from .parquet import decode_rows
            table = decode_rows(rows)
        pos, i = 0, 0
        while i < count:
            part = self._part or self._open()
            take = min(count - i, self.shard_rows - part.rows)
            if table is not None:
                part.write_table(table.slice(i, take))
            else:
                stop = int(ends[i + take - 1])
                part.write(rows[pos:stop], take)
                pos = stop
            i += take
            if part.rows == self.shard_rows:
                self._close_part()

    def close(self, images: int) -> str:
        if self._part is not None:
            self._close_part()
        keep = {p["name"] for p in self.parts} | {MANIFEST}
        _stale(self.folder, keep, lambda n: n.startswith("part-"))
        manifest = {"format": self.fmt, "shard_rows": self.shard_rows, "images": images, "parts": self.parts}
        path = os.path.join(self.folder, MANIFEST)
        write_json(path, manifest)
        return path

    def abort(self) -> None:
        if self._part is not None:
            self._part.abort()
            self._part = None


def part_name(listed_shard: str, fmt: str) -> str:
    """``data/00003.tar`` -> ``00003.<fmt>``."""
    base = os.path.basename(listed_shard.rstrip("/"))
    return (base[:-4] if base.lower().endswith(".tar") else base) + "." + fmt


class ShardParts:
    """One part per input shard, written when the shard's last record is journaled.

    ``shards``: (listed shard, first row, rows) in input order.  ``read_at(offset)`` reads a journal
    record back.  Only the journal offsets of unfinished shards are held, so memory does not grow
    with the run.
    """

    def __init__(self, folder: str, fmt: str, top_k: int, shards: list[tuple[str, int, int]],
                 read_at: Callable[[int], Any], row_ends: Callable[[Any], Any]):
        self.folder, self.fmt, self.top_k = folder, fmt, top_k
        self.shards = shards
        self._bases = [base for _, base, _ in shards]
        self._left = [n for _, _, n in shards]
        self._records: dict[int, dict[int, list[int]]] = {}  # shard -> record start -> journal offsets
        self._written: dict[int, dict[str, Any]] = {}
        self._read_at, self._row_ends = read_at, row_ends
        names = [part_name(listed, fmt) for listed, _, _ in shards]
        self.names = names
        os.makedirs(folder, exist_ok=True)

    def _shard_of(self, start: int) -> int:
        return bisect.bisect_right(self._bases, start) - 1

    def record(self, start: int, count: int, offset: int, write: bool = True) -> None:
        """A record of ``count`` rows from ``start`` was journaled at ``offset``; write its shard's part if complete."""
        pos, end = start, start + count
        while pos < end:  # a record may hold several small shards (a SliceList chunk)
            k = self._shard_of(pos)
            _, base, n = self.shards[k]
            stop = min(end, base + n)
            self._records.setdefault(k, {}).setdefault(start, []).append(offset)
            self._left[k] -= stop - pos
            if self._left[k] == 0 and write:
                self._write(k)
            pos = stop

    def preload(self, records: list[tuple[int, int, int]]) -> None:
        """(start, count, offset) of the records an interrupted run left: their parts are written at ``close``."""
        for start, count, offset in records:
            self.record(start, count, offset, write=False)

    def _write(self, k: int) -> None:
        listed, base, n = self.shards[k]
        records = self._records.pop(k, {})
        sink = FileSink(os.path.join(self.folder, self.names[k]), self.fmt, self.top_k, follow=False)
        starts = sorted(records)
        try:
            pos = base
            while pos < base + n:
                i = bisect.bisect_right(starts, pos) - 1  # the record holding row ``pos``
                rec = None if i < 0 else next((r for r in map(self._read_at, records[starts[i]]) if r is not None), None)
                if rec is None or rec.start + rec.count <= pos:
                    raise OSError(f"the journal record for row {pos} ({listed}) cannot be read back")
                a, b = pos - rec.start, min(rec.count, base + n - rec.start)
                self._write_rows(sink, rec, a, b)
                pos = rec.start + b
        except BaseException:
            sink.abort()
            raise
        sink.close()
        self._written[k] = {"name": self.names[k], "shard": listed, "rows": sink.rows, "bytes": sink.bytes}

    def _write_rows(self, sink: FileSink, rec: Any, a: int, b: int) -> None:
        """Rows ``a`` .. ``b`` of a journal record (all of them, unless it also holds other shards)."""
        if (a, b) == (0, rec.count):
            sink.write(rec.rows, rec.count)
        elif self.fmt == "parquet":
            from .parquet import decode_rows
            sink.write_table(decode_rows(rec.rows).slice(a, b - a))
        else:
            ends = self._row_ends(rec)
            sink.write(rec.rows[int(ends[a - 1]) if a else 0:int(ends[b - 1])], b - a)

    def close(self, images: int) -> str:
        """Write the parts not written yet (shards finished before a resume, empty shards), then the manifest."""
        for k in range(len(self.shards)):
            if k not in self._written:
                self._write(k)
        parts = [self._written[k] for k in range(len(self.shards))]
        keep = {p["name"] for p in parts} | {MANIFEST}
        _stale(self.folder, keep, lambda n: False)
        path = os.path.join(self.folder, MANIFEST)
        write_json(path, {"format": self.fmt, "input": "shards", "images": images, "parts": parts})
        return path

    def abort(self) -> None:
        """Parts already written stay: each is complete, and a resumed run writes the same bytes."""
