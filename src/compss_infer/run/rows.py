"""A chunk's result rows, formatted where the chunk ran, so the master only concatenates bytes.

``classify_rows`` is the task the local and sequential engines run: it resolves the chunk's plan
lines to paths, calls the classify function (``worker.classify_chunk``) and turns its ChunkResult
into the chunk's finished results-file bytes (``format_chunk``), plus the little the master still
needs per image: class ids (for ``--truth``) and the error texts.  The same ``format_chunk`` runs in
the master for an engine whose task returns a plain ChunkResult (COMPSs), so the bytes are the
same whichever side formatted them.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..core.contracts import ChunkResult
from ..images.shards import SHARD_REFS, ShardSlice, SliceList
from .inputs import Lines
from .labels import label_for
from .results import WRITERS, Row


@dataclass(frozen=True)
class RowFormat:
    """What shapes a row's bytes besides the model's answer."""

    fmt: str = "csv"
    top_k: int = 1
    labels: tuple[str, ...] | None = None
    label_offset: int = 0  # model.label_offset: class id of the labels file's first line


@dataclass
class ChunkRows:
    """One chunk's rows, ready to journal: ``rows`` is the results-file bytes of its images, in order."""

    count: int
    rows: bytes
    class_ids: np.ndarray  # int32, -1 where the image failed
    topk_ids: np.ndarray | None  # (n, k) int32
    errors: dict[int, str]
    timing: Any = None  # contracts.TaskTiming
    ends: list[int] | None = None  # byte end of each row, only when a row holds a line break itself
    truth: np.ndarray | None = None  # int32 class ids from tar samples' .cls members (-1: none)
    tied: int = 0  # classified rows whose top score several classes share (TiedTopScore in the error column)

    def __len__(self) -> int:  # like ChunkResult: the time-limit clock counts images per chunk
        return self.count


def format_chunk(result: ChunkResult, listed: Sequence[str], rf: RowFormat) -> ChunkRows:
    """The rows of ``result`` for paths ``listed`` (as the user listed them), with the results writers.

    Parquet rows are one Arrow record batch (IPC stream bytes) of typed columns instead of text.
    """
    labels = rf.labels
    ids = result.class_ids.tolist()
    errors = dict(result.errors)
    named = len(labels) + rf.label_offset if labels else None  # class ids the labels file names
    if named is not None:
        for j in range(len(listed)):
            if j not in errors and ids[j] >= named:  # the backstop when the class count is unknown
                err = f"InferenceError: class id {ids[j]} has no line in the labels file ({len(labels)} lines"
                errors[j] = err + (f", model.label_offset={rf.label_offset})" if rf.label_offset else ")")
    class_ids = result.class_ids.astype(np.int32)
    if errors:
        class_ids[list(errors)] = -1
    tied = sum(1 for j in (getattr(result, "notes", None) or {}) if j not in errors)
    topk_ids = None if result.topk_ids is None else result.topk_ids.astype(np.int32)
    if rf.fmt == "parquet":
        from .sinks.parquet import encode_rows
        return ChunkRows(count=len(listed), rows=encode_rows(result, listed, rf, errors), class_ids=class_ids,
                         topk_ids=topk_ids, errors=errors, timing=result.timing, truth=result.truth, tied=tied)
    buf = io.StringIO()
    writer = WRITERS[rf.fmt](buf, rf.top_k, header=False)
    scores = result.scores.tolist() if result.scores is not None else None
    topk = result.topk_ids.tolist() if result.topk_ids is not None else None
    topk_scores = result.topk_scores.tolist() if result.topk_scores is not None else None
    notes = getattr(result, "notes", None) or {}
    for j, path in enumerate(listed):
        err = errors.get(j) if errors else None
        if err is not None:
            writer.write(Row(path, None, None, None, err))
            continue
        cid = ids[j]
        score = scores[j] if scores is not None else None
        tks = None
        if topk_scores is not None:
            tks = [None if v != v else v for v in topk_scores[j]]
        writer.write(Row(path, cid, None if score is None or score != score else score,
                         label_for(cid, labels, rf.label_offset), notes.get(j),
                         topk[j] if topk is not None else None, tks))
    data = buf.getvalue().encode("utf-8", "surrogateescape")
    ends = None
    if data.count(b"\n") != len(listed):  # a quoted line break inside a row (rare): keep the row ends
        ends = _row_ends(data, len(listed), rf)
    return ChunkRows(count=len(listed), rows=data, ends=ends, class_ids=class_ids, topk_ids=topk_ids,
                     errors=dict(errors), timing=result.timing, truth=result.truth, tied=tied)


def _row_ends(data: bytes, n: int, rf: RowFormat) -> list[int]:
    """Byte end of each of the ``n`` rows in ``data``, found by parsing it as the writer's format."""
    import csv
    text = data.decode("utf-8", "surrogateescape")
    ends, pos = [], 0
    if rf.fmt == "csv":
        pending: list[str] = []

        def counted() -> Any:
            for line in text.split("\n")[:-1]:
                pending.append(line + "\n")
                yield line + "\n"
        for _ in csv.reader(counted()):
            pos += len("".join(pending).encode("utf-8", "surrogateescape"))
            pending.clear()
            ends.append(pos)
    else:
        for line in text.split("\n")[:-1]:
            pos += len(line.encode("utf-8", "surrogateescape")) + 1
            ends.append(pos)
    return ends


def listed_from_rows(rows: bytes, fmt: str, count: int) -> list[str]:
    """The ``path`` of each row of a record (for ``--truth`` when the master has no plan line per image)."""
    if fmt == "parquet":
        from .sinks.parquet import decode_rows
        return decode_rows(rows).column("path").to_pylist()
    text = rows.decode("utf-8", "surrogateescape")
    if fmt == "jsonl":
        import json
        return [json.loads(line)["path"] for line in text.split("\n")[:-1]]
    import csv
    return [r[0] for r in csv.reader(io.StringIO(text, newline=""))][:count]


def row_ends(rows: bytes, count: int, ends: list[int] | None) -> np.ndarray:
    """End offset of each row: the newlines, unless the record kept its own ``ends``."""
    if ends is not None:
        return np.asarray(ends, np.int64)
    return np.flatnonzero(np.frombuffer(rows, np.uint8) == 10) + 1


def classify_rows(classify: Callable[[Any, Any], ChunkResult], spec: Any, rf: RowFormat,
                  refs: Lines | ShardSlice | SliceList) -> ChunkRows:
    """The worker-side task: plan lines (or a slice of a tar shard) in, formatted rows out."""
    n = len(refs)
    if isinstance(refs, SHARD_REFS):
        result = classify(spec, refs)
        listed = result.listed if isinstance(result, ChunkResult) else None
    else:
        listed = refs.listed()
        result = classify(spec, refs.absolute(listed))
    if not isinstance(result, ChunkResult) or len(result) != n or listed is None or len(listed) != n:
        raise RuntimeError(f"the task returned {type(result).__name__}, not a result for {n} images")
    return format_chunk(result, listed, rf)
