"""Image bytes from where they live: a file path (opened by the decoder) or a tar member by offset.

A worker's batch is a list of sources: a path (``str``), a :class:`MemberRef` (shard, offset,
size) or an ``ImageError`` already known (a sample with no image member).  ``fetch`` turns member
references into their bytes with one open per shard and as few reads as possible (neighbouring
members are read as one range), so a batch of tar members costs about what one file read does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

from .preprocess import ImageError

GAP = 1 << 20  # members closer than this are read as one range (the bytes between are cheap to skip)
SPAN = 64 << 20  # but never one read larger than this


@dataclass(frozen=True)
class MemberRef:
    """The data of one tar member: ``size`` bytes at ``offset`` of the file ``path``."""

    path: str
    offset: int
    size: int


def _read_error(exc: OSError) -> ImageError:
    return ImageError("ReadError", f"cannot read the shard: {exc.strerror or exc}")


def fetch(items: Sequence[Any]) -> list[Any]:
    """``items`` with every MemberRef replaced by its bytes (or an ImageError); others unchanged."""
    out = list(items)
    by_path: dict[str, list[int]] = {}
    for i, item in enumerate(out):
        if isinstance(item, MemberRef):
            if item.size == 0:
                out[i] = ImageError("EmptyFile", "the member is empty (0 bytes)")
            else:
                by_path.setdefault(item.path, []).append(i)
    for path, idx in by_path.items():
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            for i in idx:
                out[i] = _read_error(exc)
            continue
        try:
            idx.sort(key=lambda i: out[i].offset)
            run: list[int] = []
            for i in idx + [-1]:
                ref = out[i] if i >= 0 else None
                if run and (ref is None or ref.offset - _end(out[run[-1]]) > GAP
                            or _end(ref) - out[run[0]].offset > SPAN):
                    _read_run(fd, out, run)
                    run = []
                if ref is not None:
                    run.append(i)
        finally:
            os.close(fd)
    return out


def _end(ref: MemberRef) -> int:
    return ref.offset + ref.size


def _read_run(fd: int, out: list[Any], run: list[int]) -> None:
    """One pread for members ``run`` (sorted by offset), sliced into each member's bytes."""
    first = out[run[0]].offset
    span = max(_end(out[i]) for i in run) - first
    try:
        buf = os.pread(fd, span, first)
    except OSError as exc:
        for i in run:
            out[i] = _read_error(exc)
        return
    view = memoryview(buf)
    for i in run:
        ref = out[i]
        data = bytes(view[ref.offset - first:_end(ref) - first])
        out[i] = data if len(data) == ref.size else ImageError(
            "TruncatedShard", f"the shard ends {ref.size - len(data)} bytes into this member")
