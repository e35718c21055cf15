"""Image discovery and the run's plan: a stable, ordered list of images, streamed from disk.

The plan is written once to a file (one JSON string per line, so any file name survives) and
every later pass (dispatch, resume, final assembly) streams it, so the master's memory does not
grow with the number of images.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator

import numpy as np

from ..core.errors import InputError
from ..images.listing import IMAGE_EXTENSIONS, WalkNotes, check_list_file, discover, list_blocks


def encode_line(listed: str) -> bytes:
    """One plan line: the path's UTF-8 bytes (non-UTF-8 names byte for byte), JSON only when it must be.

    A name holding a line break, or one that starts with a double quote, is written as a JSON string,
    so the plan stays one line per image and the common case costs no encoding at all.
    """
    if "\n" in listed or "\r" in listed or listed.startswith('"'):
        return json.dumps(listed).encode("ascii") + b"\n"
    return listed.encode("utf-8", "surrogateescape") + b"\n"


def decode_lines(blob: bytes) -> list[str]:
    """The listed paths of a block of plan lines (the inverse of ``encode_line``)."""
    out = blob.decode("utf-8", "surrogateescape").split("\n")
    out.pop()  # the block ends with a newline
    if blob.startswith(b'"') or b'\n"' in blob:
        out = [json.loads(p) if p.startswith('"') else p for p in out]
    return out


def absolute(base: str, listed: str) -> str:
    return listed if os.path.isabs(listed) else os.path.normpath(os.path.join(base, listed))


@dataclass(frozen=True)
class Plan:
    """The ordered images of a run: ``count`` lines in ``path`` (see ``encode_line``)."""

    path: str
    base: str  # folder that relative listed paths resolve against
    count: int
    digest: str  # sha256 over the plan file: identity of the input list
    walk: WalkNotes | None = field(default=None, compare=False)  # --images: folders not listed, links not followed

    def listed(self) -> Iterator[str]:
        """Paths as the user listed them (relative to --images for a directory), in order."""
        reader = LineReader(self.path)
        while True:
            blob = reader.take(4096)
            if not blob:
                return
            yield from decode_lines(blob)

    def absolute(self, listed: str) -> str:
        return absolute(self.base, listed)


class Lines:
    """A block of consecutive plan lines, kept as the plan's bytes: cheap to slice, send and store."""

    __slots__ = ("blob", "count", "base")

    def __init__(self, blob: bytes, count: int, base: str):
        self.blob, self.count, self.base = blob, count, base

    def __len__(self) -> int:
        return self.count

    def listed(self) -> list[str]:
        return decode_lines(self.blob)

    def absolute(self, listed: list[str] | None = None) -> list[str]:
        return [absolute(self.base, p) for p in (self.listed() if listed is None else listed)]

    def __getstate__(self) -> tuple:
        return self.blob, self.count, self.base

    def __setstate__(self, state: tuple) -> None:
        self.blob, self.count, self.base = state

    def __getitem__(self, key: Any) -> Any:
        """``lines[i]``: an absolute path; ``lines[:h]``, ``lines[h:]``: a split for the retry policy (rare)."""
        if isinstance(key, int):
            return self.absolute()[key]
        parts = self.blob.split(b"\n")[:-1][key]
        return Lines(b"".join(p + b"\n" for p in parts), len(parts), self.base)

    def __iter__(self) -> Iterator[str]:
        return iter(self.absolute())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lines) and (self.blob, self.base) == (other.blob, other.base)


class LineReader:
    """Streams a plan file as blocks of whole lines, finding line ends with numpy (no object per line)."""

    BLOCK = 1 << 22

    def __init__(self, path: str):
        self._fh = open(path, "rb")
        self._buf = b""
        self._ends = np.zeros(0, np.int64)  # end offset (after the newline) of each line in _buf
        self._i = 0  # next line of _buf
        self._pos = 0  # its byte offset

    def _fill(self) -> bool:
        data = self._fh.read(self.BLOCK)
        if not data:
            self._fh.close()
            return False
        rest = self._buf[self._pos:]
        self._buf = rest + data
        self._ends = np.flatnonzero(np.frombuffer(self._buf, np.uint8) == 10) + 1
        self._i, self._pos = 0, 0
        return True

    def take(self, n: int) -> bytes:
        """The next ``n`` lines (fewer at the end of the file) as one bytes object."""
        parts = []
        while n > 0:
            avail = len(self._ends) - self._i
            if avail <= 0:
                if self._fh.closed or not self._fill():
                    break
                continue
            k = min(n, avail)
            stop = int(self._ends[self._i + k - 1])
            parts.append(self._buf[self._pos:stop])
            self._i += k
            self._pos = stop
            n -= k
        if not parts:
            return b""
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def skip(self, n: int) -> None:
        self.take(n)


@dataclass(frozen=True)
class Chunk:
    """A contiguous range of the plan: the unit of work sent to a worker."""

    start: int
    paths: Lines

    @property
    def stop(self) -> int:
        return self.start + len(self.paths)


# A block of a list file needs line-by-line handling only if it may have a blank or comment line, a
# CR or a line starting with a double quote or white space; checked with memchr-speed searches.
_SLOW_MARKS = (b"\n\n", b"\n#", b'\n"', b"\r", b"\n ", b"\n\t", b"\n\x0b", b"\n\x0c")


def _needs_lines(blob: bytes) -> bool:
    return blob[:1] in (b"\n", b"#", b'"', b" ", b"\t", b"\x0b", b"\x0c") or any(m in blob for m in _SLOW_MARKS)


def _plan_list(list_file: str, plan_path: str, base: str) -> "Plan":
    """Copy a list file into the plan block by block; only blocks that need it are split into lines."""
    check_list_file(list_file)
    digest = hashlib.sha256()
    count = 0
    tmp = plan_path + ".tmp"
    with open(list_file, "rb") as src, open(tmp, "wb") as out:
        for blob, _ in list_blocks(list_file, src):
            if _needs_lines(blob):
                kept = []
                for line in blob.decode("utf-8").split("\n")[:-1]:
                    line = line.rstrip("\r")
                    if line.strip() and not line.startswith("#"):
                        kept.append(encode_line(line))
                blob = b"".join(kept)
            out.write(blob)
            digest.update(blob)
            count += blob.count(b"\n")
    os.replace(tmp, plan_path)
    return Plan(path=plan_path, base=base, count=count, digest=digest.hexdigest())


def write_plan(listed: Iterable[str], plan_path: str, base: str) -> Plan:
    """Stream listed paths into the plan file, hashing as we go."""
    digest = hashlib.sha256()
    count = 0
    tmp = plan_path + ".tmp"
    with open(tmp, "wb") as fh:
        buf: list[bytes] = []
        for item in listed:
            buf.append(encode_line(item))
            if len(buf) >= 8192:
                block = b"".join(buf)
                fh.write(block)
                digest.update(block)
                count += len(buf)
                buf = []
        block = b"".join(buf)
        fh.write(block)
        digest.update(block)
        count += len(buf)
    os.replace(tmp, plan_path)
    return Plan(path=plan_path, base=base, count=count, digest=digest.hexdigest())


def make_plan(images_dir: str | None, image_list: str | None, plan_path: str) -> Plan:
    """Build the plan from ``--images`` or ``--image-list`` (exactly one)."""
    if bool(images_dir) == bool(image_list):
        raise InputError("give exactly one of --images DIR or --image-list FILE")
    if images_dir:
        notes = WalkNotes()
        plan = replace(write_plan(discover(images_dir, notes), plan_path, os.path.abspath(images_dir)), walk=notes)
        what = f"--images {images_dir}"
    else:
        assert image_list is not None
        plan = _plan_list(image_list, plan_path, os.path.dirname(os.path.abspath(image_list)))
        what = f"--image-list {image_list}"
    if plan.count == 0:
        unlisted = "; " + plan.walk.warnings()[0] if plan.walk and plan.walk.unlisted else ""
        raise InputError(f"{what}: no images found (extensions: {' '.join(sorted(IMAGE_EXTENSIONS))}){unlisted}")
    return plan


def load_plan(plan_path: str, base: str) -> Plan:
    """Re-open a plan written by an earlier run (for --resume)."""
    digest = hashlib.sha256()
    count = 0
    with open(plan_path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
            count += block.count(b"\n")
    return Plan(path=plan_path, base=base, count=count, digest=digest.hexdigest())


def subtract(start: int, stop: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of [start, stop) not inside any of the sorted, disjoint ``covered`` ranges."""
    out = []
    cursor = start
    for a, b in covered:
        if b <= cursor:
            continue
        if a >= stop:
            break
        if a > cursor:
            out.append((cursor, min(a, stop)))
        cursor = max(cursor, b)
        if cursor >= stop:
            break
    if cursor < stop:
        out.append((cursor, stop))
    return out


def chunk_bounds(count: int, chunk_size: int, first: int | None = None) -> Iterator[tuple[int, int]]:
    """[start, stop) of every chunk: ``first`` images, then doubling up to ``chunk_size``.

    Small first chunks give a first result (and a first progress tick) soon after the model is
    loaded; later chunks are full size.  Deterministic, so a resumed run cuts the same chunks.
    """
    size = max(1, min(first or chunk_size, chunk_size))
    start = 0
    while start < count:
        stop = min(start + size, count)
        yield start, stop
        start = stop
        size = min(size * 2, chunk_size)


def iter_chunks(plan: Plan, chunk_size: int, covered: list[tuple[int, int]] | None = None,
                first: int | None = None) -> Iterator[Chunk]:
    """Chunks of the plan in order, skipping ``covered`` ranges (already done, from a journal).

    Each chunk carries its lines as the plan's bytes (``Lines``): no Python object per image.
    """
    covered = sorted(covered or [])
    reader = LineReader(plan.path)
    pos = 0
    for start, stop in chunk_bounds(plan.count, chunk_size, first):
        for a, b in subtract(start, stop, covered):
            if a > pos:
                reader.skip(a - pos)
            blob = reader.take(b - a)
            pos = b
            yield Chunk(start=a, paths=Lines(blob, b - a, plan.base))
