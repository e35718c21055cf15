"""The run journal: every finished chunk, appended as it completes, so nothing is lost on a crash.

Layout, beside the results file ``OUT``::

    OUT.journal/header.json   fingerprint of model + result-affecting config + input list, chunk size
    OUT.journal/plan.jsonl    the ordered input list (one JSON string per line)
    OUT.journal/chunks.jsonl  one JSON record per finished chunk (or split part of one), any order
    OUT.journal/lock          flock()ed while a master owns the journal

Records are flushed per chunk and fsynced at most once a second, so a killed master loses at most
the record it was writing (a torn last line is dropped on resume).  The final results file is
assembled from the records in input order, so an interrupted-and-resumed run writes exactly the
bytes an uninterrupted one would.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .contracts import ChunkResult
from .errors import InputError

FORMAT_VERSION = 1
_HEAD = re.compile(rb'\{"s":(\d+),"n":(\d+)[,}]')


def journal_dir(output: str) -> str:
    return output + ".journal"


@dataclass
class Record:
    """One finished range of the plan, as stored in the journal."""

    start: int
    count: int
    class_ids: list[int]
    scores: list[float | None] | None
    topk_ids: list[list[int]] | None
    topk_scores: list[list[float | None]] | None
    errors: dict[int, str]
    timing: list[Any] | None
    attempts: int = 1

    @classmethod
    def from_result(cls, start: int, result: ChunkResult, attempts: int) -> "Record":
        def floats(a: np.ndarray) -> list[Any]:  # NaN (no score) -> None; v != v is the cheap NaN test
            return [None if v != v else v for v in a.tolist()] if a.ndim == 1 else \
                   [[None if v != v else v for v in row] for row in a.tolist()]
        t = result.timing
        timing = None if t is None else [t.host, t.pid, round(t.started, 6), round(t.finished, 6),
                                         round(t.load_s, 6), round(t.decode_s, 6), round(t.infer_s, 6),
                                         t.model_id]
        return cls(start=start, count=len(result), class_ids=result.class_ids.tolist(),
                   scores=None if result.scores is None else floats(result.scores),
                   topk_ids=None if result.topk_ids is None else result.topk_ids.tolist(),
                   topk_scores=None if result.topk_scores is None else floats(result.topk_scores),
                   errors=dict(result.errors), timing=timing, attempts=attempts)

    def to_json(self) -> str:
        d: dict[str, Any] = {"s": self.start, "n": self.count, "ids": self.class_ids}
        if self.scores is not None:
            d["sc"] = self.scores
        if self.topk_ids is not None:
            d["ki"], d["ks"] = self.topk_ids, self.topk_scores
        if self.errors:
            d["err"] = {str(k): v for k, v in self.errors.items()}
        if self.timing is not None:
            d["t"] = self.timing
        if self.attempts != 1:
            d["a"] = self.attempts
        return json.dumps(d, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> "Record":
        d = json.loads(line)
        return cls(start=d["s"], count=d["n"], class_ids=d["ids"], scores=d.get("sc"),
                   topk_ids=d.get("ki"), topk_scores=d.get("ks"),
                   errors={int(k): v for k, v in d.get("err", {}).items()}, timing=d.get("t"),
                   attempts=d.get("a", 1))


class Journal:
    """Owns ``OUT.journal/`` for one master: create or reopen, append records, read them back."""

    def __init__(self, output: str):
        self.dir = journal_dir(output)
        self.header_path = os.path.join(self.dir, "header.json")
        self.plan_path = os.path.join(self.dir, "plan.jsonl")
        self.chunks_path = os.path.join(self.dir, "chunks.jsonl")
        self._lock_fh: Any = None
        self._fh: Any = None
        self._last_sync = 0.0
        self.header: dict[str, Any] = {}
        self.owned = False  # holds the lock: only then may it delete the journal

    # ------------------------------------------------------------------ ownership
    def exists(self) -> bool:
        return os.path.isfile(self.header_path)

    def _lock(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        self._lock_fh = open(os.path.join(self.dir, "lock"), "a+")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_fh.close()
            self._lock_fh = None
            raise InputError(f"another compss-infer run is using {self.dir}") from None
        self.owned = True

    def create(self) -> None:
        """Start a fresh journal (removing a stale one the caller decided to discard)."""
        if os.path.isdir(self.dir):
            self._lock()
            for name in ("header.json", "plan.jsonl", "chunks.jsonl"):
                p = os.path.join(self.dir, name)
                if os.path.exists(p):
                    os.unlink(p)
        else:
            self._lock()

    def write_header(self, header: dict[str, Any]) -> None:
        self.header = {"version": FORMAT_VERSION, **header}
        tmp = self.header_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.header, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.header_path)
        self._open_append()

    def reopen(self) -> dict[str, Any]:
        """Take over an interrupted run's journal; returns its header."""
        self._lock()
        try:
            with open(self.header_path, encoding="utf-8") as fh:
                self.header = json.load(fh)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the journal header {self.header_path}: {exc}") from None
        if self.header.get("version") != FORMAT_VERSION:
            raise InputError(f"journal {self.dir} was written by another compss-infer version")
        self._drop_torn_tail()
        self._open_append()
        return self.header

    def _drop_torn_tail(self) -> None:
        """A master killed mid-write leaves a partial last line: cut it off."""
        if not os.path.exists(self.chunks_path):
            return
        with open(self.chunks_path, "rb+") as fh:
            data = fh.read()
            keep = data.rfind(b"\n") + 1
            if keep != len(data):
                fh.truncate(keep)

    def _open_append(self) -> None:
        self._fh = open(self.chunks_path, "a", encoding="utf-8")

    # ------------------------------------------------------------------ records
    def append(self, record: Record) -> None:
        self._fh.write(record.to_json() + "\n")
        self._fh.flush()
        now = time.monotonic()
        if now - self._last_sync >= 1.0:
            os.fsync(self._fh.fileno())
            self._last_sync = now

    def scan(self) -> list[tuple[int, int, int]]:
        """(start, count, byte offset) of every record, for resume and assembly; one pass, no rows kept.

        Records begin with ``{"s":START,"n":COUNT`` (``to_json`` writes them first), so only that
        prefix is read; a record in another shape is parsed whole.
        """
        out = []
        if not os.path.exists(self.chunks_path):
            return out
        with open(self.chunks_path, "rb") as fh:
            offset = 0
            for line in fh:
                if line.endswith(b"\n"):
                    m = _HEAD.match(line)
                    if m:
                        out.append((int(m.group(1)), int(m.group(2)), offset))
                    else:
                        head = json.loads(line)
                        out.append((head["s"], head["n"], offset))
                offset += len(line)
        return out

    def records_in_order(self, total: int) -> Iterator[Record]:
        """Records covering [0, total) in input order; raises if a range is missing."""
        index: dict[int, tuple[int, int]] = {}
        for start, count, offset in self.scan():
            index.setdefault(start, (count, offset))
        self.sync()
        with open(self.chunks_path, "rb") as fh:
            pos = 0
            while pos < total:
                if pos not in index:
                    raise RuntimeError(f"journal {self.dir} has no record starting at image {pos}")
                count, offset = index[pos]
                fh.seek(offset)
                yield Record.from_json(fh.readline().decode("utf-8"))
                pos += count

    def covered(self) -> list[tuple[int, int]]:
        """Finished ranges [start, stop), merged and sorted."""
        spans = sorted((s, s + n) for s, n, _ in self.scan())
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return merged

    # ------------------------------------------------------------------ end
    def sync(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def remove(self) -> None:
        """Delete the journal, but only one this master owns (never another run's)."""
        owned = self.owned
        self.close()
        self.owned = False
        if owned:
            shutil.rmtree(self.dir, ignore_errors=True)
