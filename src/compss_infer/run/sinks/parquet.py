"""Parquet results: the same columns as the CSV, typed (ids int64, scores float64, nulls for error rows).

Workers encode their chunk's rows as one Arrow record batch (``encode_rows``, IPC stream bytes), so
the master, as for CSV and JSONL, never builds a row object: it hands batches to pyarrow's writer.
Row groups are cut every ``ROW_GROUP`` rows whatever the chunking (``ParquetRows``), and each
group is written from one contiguous table, so a resumed run, another engine or another chunk
size writes the same bytes.
"""
from __future__ import annotations

from typing import Any, BinaryIO, Sequence

import numpy as np

from ..labels import label_for
from ..results import round_score

ROW_GROUP = 65536


def _pa() -> Any:
    import pyarrow
    return pyarrow


def schema(top_k: int) -> Any:
    pa = _pa()
    fields = [("path", pa.string()), ("class_id", pa.int64()), ("score", pa.float64()),
              ("label", pa.string()), ("error", pa.string())]
    if top_k > 1:
        fields += [("topk_ids", pa.list_(pa.int64())), ("topk_scores", pa.list_(pa.float64()))]
    return pa.schema(fields)


def _text(value: str) -> str:
    """A name Parquet can hold: strings must be UTF-8, so undecodable bytes are kept as \\xNN escapes."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def encode_rows(result: Any, listed: Sequence[str], rf: Any, errors: dict[int, str]) -> bytes:
    """A chunk's rows (``contracts.ChunkResult`` for ``listed``; ``errors``: its error rows) as Arrow IPC bytes."""
    pa = _pa()
    n = len(listed)
    failed = np.zeros(n, bool)
    failed[list(errors)] = True
    notes = getattr(result, "notes", None) or {}  # a classified row's note (a tied top score) in the error column
    ids = result.class_ids.astype(np.int64)
    labels = [None if failed[i] else label_for(int(ids[i]), rf.labels, rf.label_offset) for i in range(n)]
    if result.scores is None:
        scores = pa.nulls(n, pa.float64())
    else:
        scores = pa.array([None if failed[i] or v != v else round_score(v)
                           for i, v in enumerate(result.scores.tolist())], pa.float64())
    columns = [pa.array([_text(p) for p in listed], pa.string()), pa.array(ids, pa.int64(), mask=failed), scores,
               pa.array(labels, pa.string()), pa.array([errors.get(i, notes.get(i)) for i in range(n)], pa.string())]
    if rf.top_k > 1:
        tk = result.topk_ids.tolist() if result.topk_ids is not None else None
        ts = result.topk_scores.tolist() if result.topk_scores is not None else None
        columns.append(pa.array([None if failed[i] or tk is None else tk[i] for i in range(n)],
                                pa.list_(pa.int64())))
        columns.append(pa.array([None if failed[i] or ts is None else [None if v != v else round_score(v)
                                                                      for v in ts[i]] for i in range(n)],
                                pa.list_(pa.float64())))
    batch = pa.record_batch(columns, schema=schema(rf.top_k))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def decode_rows(rows: bytes) -> Any:
    """The pyarrow Table of ``encode_rows``'s bytes."""
    return _pa().ipc.open_stream(rows).read_all()


class ParquetRows:
    """A Parquet file written from tables, in row groups of exactly ``group`` rows (the last one shorter)."""

    def __init__(self, fh: BinaryIO, top_k: int, group: int = ROW_GROUP):
        import pyarrow.parquet as pq
        self._writer = pq.ParquetWriter(fh, schema(top_k))
        self._group = group
        self._buf: list[Any] = []
        self._n = 0

    def add(self, table: Any) -> None:
        self._buf.append(table)
        self._n += table.num_rows
        while self._n >= self._group:
            self._flush(self._group)

    def _flush(self, n: int) -> None:
        table = _pa().concat_tables(self._buf).combine_chunks()
        self._writer.write_table(table.slice(0, n), row_group_size=n)
        rest = table.slice(n)
        self._buf = [rest] if rest.num_rows else []
        self._n -= n

    def close(self) -> None:
        if self._n:
            self._flush(self._n)
        self._writer.close()

