"""The Sink protocol, and the one-file sink every other sink is made of.

A sink takes the rows of consecutive journal records, in input order (``write``), and makes them
visible only when complete (``close``: atomic renames); ``abort`` leaves nothing half-written.
"""
from __future__ import annotations

from typing import Any, Protocol

from ...core.atomic import atomic_open
from ..results import header_bytes


class Sink(Protocol):
    def write(self, rows: bytes, count: int, ends: Any) -> None:
        """``count`` rows as a journal record holds them (``ends``: each CSV/JSONL row's byte end)."""

    def close(self) -> Any:
        """Complete: every file renamed into place (a manifest last, where there is one)."""

    def abort(self) -> None:
        """Drop what was written (temporary files removed)."""


class FileSink:
    """One results file: the CSV header and concatenated row bytes, or Parquet from Arrow batches."""

    def __init__(self, path: str, fmt: str, top_k: int, *, follow: bool = True, replace: bool = True):
        """``follow=False``: a part of ours, never written through a link planted at its name;
        ``replace=False``: ``close`` raises FileExistsError if the name was taken meanwhile (core/atomic.py)."""
        self.path, self.fmt = path, fmt
        self.rows = 0
        self.bytes = 0
        self._cm: Any = atomic_open(path, "wb", follow=follow, replace=replace)
        self._fh = self._cm.__enter__()
        self._pq: Any = None
        if fmt == "parquet":
            from .parquet import ParquetRows
            self._pq = ParquetRows(self._fh, top_k)
        else:
            self._fh.write(header_bytes(fmt, top_k))
            self.bytes = len(header_bytes(fmt, top_k))

    def write(self, rows: bytes, count: int, ends: Any = None) -> None:
        if self._pq is not None:
            from .parquet import decode_rows
            self._pq.add(decode_rows(rows))
        else:
            self._fh.write(rows)
            self.bytes += len(rows)
        self.rows += count

    def write_table(self, table: Any) -> None:
        """Parquet only: rows already decoded (a slice of a record)."""
        self._pq.add(table)
        self.rows += table.num_rows

    def close(self) -> str:
        if self._pq is not None:
            self._pq.close()
            self.bytes = self._fh.tell()
        cm, self._cm = self._cm, None
        cm.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        if self._cm is not None:
            cm, self._cm = self._cm, None
            cm.__exit__(RuntimeError, RuntimeError("aborted"), None)
