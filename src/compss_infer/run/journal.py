"""The run journal: every finished chunk, appended as it completes, so nothing is lost on a crash.

Layout, beside the results file ``OUT``::

    OUT.journal/header.json   fingerprint of model + result-affecting config + input list, chunk size
    OUT.journal/plan.txt      the ordered input list (one path per line, see inputs.encode_line)
    OUT.journal/chunks.bin    one binary record per finished chunk (or split part of one), any order
    OUT.journal/lock          flock()ed while a master owns the journal

A record is a fixed head (magic, start, count, payload length, payload CRC-32, head CRC-32) and a
payload: a small JSON meta (errors, timing, attempts), the class ids as int32 (for ``--truth``)
and the chunk's finished results-file bytes, formatted by the worker.  So the final results file
is the concatenation of the payloads' rows in input order, and an interrupted-and-resumed run
writes exactly the bytes an uninterrupted one would.  Records are flushed per chunk and fsynced
at most once a second; a torn last record is cut off on resume, and a record whose CRC does not
match (a corrupt middle) is skipped by the scan, so its range is run again.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ..core.errors import CompssInferError, InputError
from .outpaths import journal_dir

FORMAT_VERSION = 2
MAGIC = b"CIJ2"
_HEAD = struct.Struct("<4sQIQI")  # magic, start, count, payload bytes, payload crc32
_HEAD_CRC = struct.Struct("<I")
HEAD_SIZE = _HEAD.size + _HEAD_CRC.size
_META = struct.Struct("<I")


class JournalCorrupt(CompssInferError):
    """A journal record needed for the results cannot be read back (exit 2, journal kept)."""

    exit_code = 2


def _no_follow(path: str, flags: int) -> int:
    """``open(..., opener=_no_follow)``: a journal file is never opened through a planted symlink."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o666)


@dataclass
class Record:
    """One finished range of the plan, as stored in the journal."""

    start: int
    count: int
    rows: bytes  # the range's results-file bytes
    class_ids: np.ndarray  # int32, -1 where the image failed
    topk_ids: np.ndarray | None  # (count, k) int32
    errors: dict[int, str]
    timing: list[Any] | None
    attempts: int = 1
    ends: list[int] | None = None  # row end offsets, only when a row holds a line break
    truth: np.ndarray | None = None  # int32 class ids from tar samples' .cls members (-1: none)
    tied: int = 0  # classified rows flagged TiedTopScore

    @classmethod
    def from_rows(cls, start: int, rows: Any, attempts: int) -> "Record":
        """From a ``rows.ChunkRows``."""
        t = rows.timing
        timing = None if t is None else [t.host, t.pid, round(t.started, 6), round(t.finished, 6),
                                         round(t.load_s, 6), round(t.decode_s, 6), round(t.infer_s, 6),
                                         t.model_id]
        return cls(start=start, count=rows.count, rows=rows.rows, class_ids=rows.class_ids,
                   topk_ids=rows.topk_ids, errors=dict(rows.errors), timing=timing, attempts=attempts,
                   ends=rows.ends, truth=rows.truth, tied=getattr(rows, "tied", 0))

    def encode(self) -> bytes:
        k = 0 if self.topk_ids is None else int(self.topk_ids.shape[1]) if self.topk_ids.ndim == 2 else 0
        meta: dict[str, Any] = {"k": k, "rows": len(self.rows)}
        if self.errors:
            meta["err"] = {str(i): v for i, v in self.errors.items()}
        if self.timing is not None:
            meta["t"] = self.timing
        if self.attempts != 1:
            meta["a"] = self.attempts
        if self.ends is not None:
            meta["ends"] = self.ends
        if self.truth is not None:
            meta["tr"] = 1
        if self.tied:
            meta["tie"] = self.tied
        mb = json.dumps(meta, separators=(",", ":")).encode()
        parts = [_META.pack(len(mb)), mb, np.ascontiguousarray(self.class_ids, "<i4").tobytes()]
        if k:
            parts.append(np.ascontiguousarray(self.topk_ids, "<i4").tobytes())
        if self.truth is not None:
            parts.append(np.ascontiguousarray(self.truth, "<i4").tobytes())
        parts.append(self.rows)
        payload = b"".join(parts)
        head = _HEAD.pack(MAGIC, self.start, self.count, len(payload), zlib.crc32(payload))
        return head + _HEAD_CRC.pack(zlib.crc32(head)) + payload

    @classmethod
    def decode(cls, start: int, count: int, payload: bytes) -> "Record":
        (mlen,) = _META.unpack_from(payload, 0)
        meta = json.loads(payload[4:4 + mlen])
        pos = 4 + mlen
        ids = np.frombuffer(payload, "<i4", count, pos)
        pos += 4 * count
        k = meta.get("k", 0)
        topk = None
        if k:
            topk = np.frombuffer(payload, "<i4", count * k, pos).reshape(count, k)
            pos += 4 * count * k
        truth = None
        if meta.get("tr"):
            truth = np.frombuffer(payload, "<i4", count, pos)
            pos += 4 * count
        rows = payload[pos:pos + meta["rows"]]
        return cls(start=start, count=count, rows=rows, class_ids=ids, topk_ids=topk,
                   errors={int(i): v for i, v in meta.get("err", {}).items()}, timing=meta.get("t"),
                   attempts=meta.get("a", 1), ends=meta.get("ends"), truth=truth, tied=meta.get("tie", 0))


def _read_head(buf: bytes) -> tuple[int, int, int, int] | None:
    """(start, count, payload length, payload crc) of a valid head, else None."""
    if len(buf) < HEAD_SIZE or buf[:4] != MAGIC:
        return None
    (crc,) = _HEAD_CRC.unpack_from(buf, _HEAD.size)
    if zlib.crc32(buf[:_HEAD.size]) != crc:
        return None
    _, start, count, plen, pcrc = _HEAD.unpack_from(buf, 0)
    return start, count, plen, pcrc


class Journal:
    """Owns ``OUT.journal/`` for one master: create or reopen, append records, read them back."""

    def __init__(self, output: str):
        self.dir = journal_dir(output)
        self.header_path = os.path.join(self.dir, "header.json")
        self.plan_path = os.path.join(self.dir, "plan.txt")
        self.chunks_path = os.path.join(self.dir, "chunks.bin")
        self._lock_fh: Any = None
        self._fh: Any = None
        self._last_sync = 0.0
        self.header: dict[str, Any] = {}
        self.owned = False  # holds the lock: only then may it delete the journal
        self.skipped: list[tuple[int, int]] = []  # (byte offset, bytes) of corrupt stretches the scan skipped

    # ------------------------------------------------------------------ ownership
    def exists(self) -> bool:
        return os.path.isfile(self.header_path)

    def _lock(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        if os.path.islink(self.dir):
            raise InputError(f"{self.dir} is a symbolic link: the journal is never written through a link (remove it)")
        self._lock_fh = open(os.path.join(self.dir, "lock"), "a+", opener=_no_follow)
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
            for name in ("header.json", "plan.jsonl", "chunks.jsonl", "plan.txt", "chunks.bin", "index.bin"):
                p = os.path.join(self.dir, name)
                if os.path.exists(p):
                    os.unlink(p)
        else:
            self._lock()

    def write_header(self, header: dict[str, Any]) -> None:
        self.header = {"version": FORMAT_VERSION, **header}
        tmp = self.header_path + ".tmp"
        with open(tmp, "w", encoding="utf-8", opener=_no_follow) as fh:
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
            raise InputError(f"--resume refused: the journal {self.dir} was written by another compss-infer version "
                             "(use --overwrite to start afresh)")
        self._drop_torn_tail()
        self._open_append()
        return self.header

    def _drop_torn_tail(self) -> None:
        """A master killed mid-write leaves a partial last record: cut it off."""
        if not os.path.exists(self.chunks_path):
            return
        end = 0
        for _, _, offset, size in self._scan():
            end = offset + size
        if self.skipped and self.skipped[-1][0] >= end:  # torn or corrupt stretch at the very end
            with open(self.chunks_path, "rb+", opener=_no_follow) as fh:
                fh.truncate(end)
            self.skipped.pop()

    def _open_append(self) -> None:
        self._fh = open(self.chunks_path, "ab", opener=_no_follow)

    # ------------------------------------------------------------------ records
    def append(self, record: Record) -> int:
        """Append ``record``; returns its byte offset in the journal (for ``read_at``)."""
        offset = self._fh.tell()
        self._fh.write(record.encode())
        self._fh.flush()
        now = time.monotonic()
        if now - self._last_sync >= 1.0:
            os.fsync(self._fh.fileno())
            self._last_sync = now
        return offset

    def read_at(self, offset: int) -> Record | None:
        """The record at ``offset`` (from ``append`` or ``scan``), or None if it is not intact there."""
        with open(self.chunks_path, "rb") as fh:
            fh.seek(offset)
            head = _read_head(fh.read(HEAD_SIZE))
            if head is None:
                return None
            payload = fh.read(head[2])
        if len(payload) != head[2] or zlib.crc32(payload) != head[3]:
            return None
        return Record.decode(head[0], head[1], payload)

    def _scan(self, verify: bool = True) -> Iterator[tuple[int, int, int, int]]:
        """(start, count, offset, record bytes) of every good record, in file order.

        ``verify`` checks each payload's CRC too (reads the whole journal).  A bad head or payload is
        skipped: the scan looks for the next valid head, so one corrupt record costs only its range.
        """
        self.skipped = []
        if not os.path.exists(self.chunks_path):
            return
        with open(self.chunks_path, "rb") as fh:
            data_len = os.fstat(fh.fileno()).st_size
            offset = 0
            while offset < data_len:
                fh.seek(offset)
                head = _read_head(fh.read(HEAD_SIZE))
                good = False
                if head is not None and offset + HEAD_SIZE + head[2] <= data_len:
                    start, count, plen, pcrc = head
                    good = not verify or zlib.crc32(fh.read(plen)) == pcrc
                if good:
                    yield start, count, offset, HEAD_SIZE + plen
                    offset += HEAD_SIZE + plen
                    continue
                nxt = self._next_head(fh, offset + 1, data_len)
                self.skipped.append((offset, nxt - offset))
                offset = nxt

    @staticmethod
    def _next_head(fh: Any, offset: int, data_len: int) -> int:
        """Offset of the next valid record head at or after ``offset`` (``data_len`` if none)."""
        while offset < data_len:
            fh.seek(offset)
            block = fh.read(1 << 20)
            i = block.find(MAGIC)
            while i >= 0:
                fh.seek(offset + i)
                if _read_head(fh.read(HEAD_SIZE)) is not None:
                    return offset + i
                i = block.find(MAGIC, i + 1)
            if len(block) < (1 << 20):
                return data_len
            offset += len(block) - len(MAGIC) + 1
        return data_len

    def scan(self) -> list[tuple[int, int, int]]:
        """(start, count, byte offset) of every good record, for resume and assembly."""
        return [(s, n, off) for s, n, off, _ in self._scan()]

    def records_in_order(self, total: int) -> Iterator[Record]:
        """Records covering [0, total) in input order; raises JournalCorrupt if a range is missing."""
        self.sync()
        index: dict[int, list[tuple[int, int]]] = {}
        for start, count, offset, _ in self._scan(verify=False):
            index.setdefault(start, []).append((count, offset))
        with open(self.chunks_path, "rb") as fh:
            pos = 0
            while pos < total:
                if pos not in index:
                    raise JournalCorrupt(f"journal {self.dir} has no record starting at image {pos}; "
                                         "run again with --resume to redo the missing range")
                for count, offset in index[pos]:  # a corrupt copy may have been redone later
                    fh.seek(offset)
                    head = _read_head(fh.read(HEAD_SIZE))
                    payload = fh.read(head[2]) if head else b""
                    if head is not None and zlib.crc32(payload) == head[3]:
                        break
                else:
                    raise JournalCorrupt(f"journal {self.dir}: the record for images {pos}.. is corrupt; "
                                         "run again with --resume to redo it")
                yield Record.decode(pos, count, payload)
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
