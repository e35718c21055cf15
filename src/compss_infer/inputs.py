"""Image discovery and the run's plan: a stable, ordered list of images, streamed from disk.

The plan is written once to a file (one JSON string per line, so any file name survives) and
every later pass (dispatch, resume, final assembly) streams it, so the master's memory does not
grow with the number of images.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from typing import Iterable, Iterator

from .errors import InputError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class Plan:
    """The ordered images of a run: ``count`` lines in ``path`` (JSON strings, as listed)."""

    path: str
    base: str  # folder that relative listed paths resolve against
    count: int
    digest: str  # sha256 over the listed paths, in order: identity of the input list

    def listed(self) -> Iterator[str]:
        """Paths as the user listed them (relative to --images for a directory), in order."""
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)

    def absolute(self, listed: str) -> str:
        return listed if os.path.isabs(listed) else os.path.normpath(os.path.join(self.base, listed))


@dataclass(frozen=True)
class Chunk:
    """A contiguous range of the plan: the unit of work sent to a worker."""

    start: int
    paths: tuple[str, ...]  # absolute

    @property
    def stop(self) -> int:
        return self.start + len(self.paths)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _walk_sorted(root: str, rel: str = "") -> Iterator[str]:
    """Depth-first walk that yields relative POSIX paths in plain lexicographic order.

    A folder ``a`` sorts as ``a/`` so that ``a-b.png`` < ``a/x.png`` as in a sorted listing of
    full paths.  Symlinked folders are not followed (no loops); symlinked files are listed.
    """
    try:
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            entries = []
            for entry in it:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                entries.append((entry.name + "/" if is_dir else entry.name, is_dir))
    except PermissionError:
        return
    entries.sort()
    for key, is_dir in entries:
        if is_dir:
            yield from _walk_sorted(root, rel + key)
        elif is_image_name(key):
            yield rel + key


def discover(images_dir: str) -> Iterator[str]:
    """Image files under ``images_dir``, recursive, as relative POSIX paths in sorted order."""
    if not os.path.isdir(images_dir):
        raise InputError(f"--images: not a directory: {images_dir}")
    return _walk_sorted(images_dir)


def read_list(list_file: str) -> Iterator[str]:
    """Paths from a list file, one per line, order kept; blank lines skipped."""
    try:
        st = os.stat(list_file)
    except OSError as exc:
        raise InputError(f"--image-list: cannot read {list_file}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"--image-list: not a regular file: {list_file}")

    def lines() -> Iterator[str]:
        with open(list_file, encoding="utf-8", errors="surrogateescape", newline="") as fh:
            for line in fh:
                line = line.rstrip("\r\n")
                if line.strip():
                    yield line
    return lines()


def write_plan(listed: Iterable[str], plan_path: str, base: str) -> Plan:
    """Stream listed paths into the plan file, hashing as we go."""
    digest = hashlib.sha256()
    count = 0
    tmp = plan_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for item in listed:
            line = json.dumps(item) + "\n"
            fh.write(line)
            digest.update(line.encode("utf-8"))
            count += 1
    os.replace(tmp, plan_path)
    return Plan(path=plan_path, base=base, count=count, digest=digest.hexdigest())


def make_plan(images_dir: str | None, image_list: str | None, plan_path: str) -> Plan:
    """Build the plan from ``--images`` or ``--image-list`` (exactly one)."""
    if bool(images_dir) == bool(image_list):
        raise InputError("give exactly one of --images DIR or --image-list FILE")
    if images_dir:
        plan = write_plan(discover(images_dir), plan_path, os.path.abspath(images_dir))
        what = f"--images {images_dir}"
    else:
        assert image_list is not None
        plan = write_plan(read_list(image_list), plan_path, os.path.dirname(os.path.abspath(image_list)))
        what = f"--image-list {image_list}"
    if plan.count == 0:
        raise InputError(f"{what}: no images found (extensions: {' '.join(sorted(IMAGE_EXTENSIONS))})")
    return plan


def load_plan(plan_path: str, base: str) -> Plan:
    """Re-open a plan written by an earlier run (for --resume)."""
    digest = hashlib.sha256()
    count = 0
    with open(plan_path, "rb") as fh:
        for line in fh:
            digest.update(line)
            count += 1
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
    """Chunks of the plan in order, skipping ``covered`` ranges (already done, from a journal)."""
    covered = sorted(covered or [])
    ranges: list[tuple[int, int]] = []
    for start, stop in chunk_bounds(plan.count, chunk_size, first):
        ranges.extend(subtract(start, stop, covered))
    if not ranges:
        return
    ri = 0
    a, b = ranges[0]
    buf: list[str] = []
    for index, listed in enumerate(plan.listed()):
        if index < a:
            continue
        buf.append(plan.absolute(listed))
        if index == b - 1:
            yield Chunk(start=a, paths=tuple(buf))
            buf = []
            ri += 1
            if ri == len(ranges):
                return
            a, b = ranges[ri]
