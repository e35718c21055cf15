"""WebDataset / img2dataset tar shards: samples, the shard index, and slices of a shard read by offset.

A sample is a run of consecutive members sharing a key (the name up to the first dot of its last
path component, as WebDataset's ``base_plus_ext``); its image member is the one whose extension
(everything after that dot) is an image extension; its ``.cls`` member, if any, holds the class id
as text; other members are ignored.  A sample with no image member, two image members, or an image
member that is a link or cut off by the end of the file becomes an error source, so it gets an error
row, never silence.

``index_shard`` (a worker task, once per shard) walks the headers and returns where each sample
starts; the master only keeps these offsets, never names.  A chunk is a :class:`ShardSlice`: the
shard plus the start offsets of its samples.  ``read_slice`` (in the worker) walks the headers of
that byte range again, checks it finds the same samples, and returns their listed paths and the
member references the decoder reads (``readers.fetch``).
"""
from __future__ import annotations

import os
from array import array
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from .listing import IMAGE_EXTENSIONS
from .preprocess import ImageError
from .readers import MemberRef
from .tarscan import Damage, Member, scan

IMAGE_EXTS = frozenset(e[1:] for e in IMAGE_EXTENSIONS)
MAX_CLS_BYTES = 64


def split_key(name: str) -> tuple[str, str] | None:
    """(key, extension) of a member name, or None when it has none (no dot, or a leading dot)."""
    slash = name.rfind("/")
    dot = name.find(".", slash + 1)
    if dot <= slash + 1:
        return None
    return name[:dot], name[dot + 1:]


class Sample:
    """One sample: its key, where its first header starts, its members (directories left out), and
    which of them are images or ``.cls``."""

    __slots__ = ("key", "start", "members", "images", "classes")

    def __init__(self, key: str, start: int):
        self.key, self.start = key, start
        self.members: list[Member] = []
        self.images: list[Member] = []
        self.classes: list[Member] = []

    def add(self, m: Member, ext: str) -> None:
        self.members.append(m)
        ext = ext.lower()
        if ext in IMAGE_EXTS:
            self.images.append(m)
        elif ext == "cls":
            self.classes.append(m)

    def image(self) -> tuple[Member | None, ImageError | None]:
        """The image member, or the error its row carries."""
        images = self.images
        if len(images) == 1 and images[0].kind == "file":
            return images[0], None
        if not images:
            names = ", ".join(m.name for m in self.members)
            return None, ImageError("NoImage", f"sample {self.key} has no image member (members: {names})")
        if len(images) > 1:
            names = ", ".join(m.name for m in images)
            return None, ImageError("AmbiguousSample", f"sample {self.key} has {len(images)} image members "
                                                       f"({names}): which one to classify cannot be told")
        what = "a link" if images[0].kind == "link" else "not a regular member"
        return None, ImageError("NotAFile", f"the image member is {what} inside the tar (not read)")

    def cls_member(self) -> Member | None:
        found = self.classes
        return found[0] if len(found) == 1 and found[0].kind == "file" and not found[0].truncated else None

    def listed_name(self) -> str:
        m, _ = self.image()
        return m.name if m is not None else self.key


def samples(items: Iterable[Member | Damage]) -> Iterator[Sample | Damage]:
    """Group consecutive members by key; damage passes through where it was met."""
    current: Sample | None = None
    for item in items:
        if isinstance(item, Damage):
            yield item
            continue
        if item.kind == "dir":
            continue
        name = item.name
        slash = name.rfind("/")
        dot = name.find(".", slash + 1)
        if dot <= slash + 1:
            continue  # no key: not part of any sample (WebDataset skips it too)
        key = name[:dot]
        if current is not None and current.key != key:
            yield current
            current = None
        if current is None:
            current = Sample(key, item.header)
        current.add(item, name[dot + 1:])
    if current is not None:
        yield current


def _end(m: Member) -> int:
    return m.offset + -(-m.size // 512) * 512


@dataclass
class ShardIndex:
    """What the master keeps of a shard: where each sample starts (``starts[n]`` = where the last ends)."""

    path: str
    size: int
    mtime_ns: int
    starts: np.ndarray  # int64, count + 1
    damage: list[str]

    @property
    def count(self) -> int:
        return len(self.starts) - 1


def identity(fh: Any) -> tuple[int, int]:
    st = os.fstat(fh.fileno())
    return st.st_size, st.st_mtime_ns


def index_shard(path: str, planned_size: int | None = None) -> ShardIndex:
    """Walk a shard's headers (seeks only, no image data) and note where every sample starts.

    ``planned_size``: the size the master saw; a different one is noted as damage (the shard changed).
    """
    starts = array("q")
    damage: list[str] = []
    end = 0
    with open(path, "rb", buffering=1 << 16) as fh:
        size, mtime_ns = identity(fh)
        if planned_size is not None and size != planned_size:
            damage.append(f"changed since the run started ({planned_size} bytes then, {size} now): its samples "
                          f"are errors (ShardChanged)")
        for item in samples(scan(fh)):
            if isinstance(item, Damage):
                damage.append(item.what)
                continue
            starts.append(item.start)
            end = max(_end(m) for m in item.members)
    starts.append(end if starts else 0)
    return ShardIndex(path, size, mtime_ns, np.frombuffer(starts, np.int64).copy(), damage)


class ShardSlice:
    """Samples ``first`` .. ``first + len`` of one shard: what a chunk of a shard run is.

    ``starts`` holds the samples' start offsets plus the end of the last one, so the slice is one
    byte range of the shard; ``listed`` is the shard as the user gave it (rows say
    ``<listed>/<member name>``); ``size``/``mtime_ns`` are the shard's when it was planned (``mtime_ns``
    -1: a copy staged by COMPSs, whose time is the copy's, so only its size and samples are checked).
    """

    __slots__ = ("path", "listed_shard", "size", "mtime_ns", "first", "starts", "want_cls")

    def __init__(self, path: str, listed_shard: str, size: int, mtime_ns: int, first: int, starts: np.ndarray,
                 want_cls: bool = False):
        self.path, self.listed_shard, self.size, self.mtime_ns = path, listed_shard, size, mtime_ns
        self.first, self.starts, self.want_cls = first, starts, want_cls

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for k, v in zip(self.__slots__, state):
            setattr(self, k, v)

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, key: Any) -> "ShardSlice":
        """``sl[a:b]``: a split for the retry policy."""
        if not isinstance(key, slice):
            raise TypeError("a ShardSlice is split with sl[a:b]")
        a, b, _ = key.indices(len(self))
        return ShardSlice(self.path, self.listed_shard, self.size, self.mtime_ns, self.first + a,
                          self.starts[a:b + 1], self.want_cls)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ShardSlice) and (self.path, self.first, self.size, self.mtime_ns) ==
                (other.path, other.first, other.size, other.mtime_ns) and np.array_equal(self.starts, other.starts))

    def staged(self, local: str) -> "ShardSlice":
        """The same samples in a copy of the shard at ``local`` (COMPSs FILE_IN staging)."""
        return ShardSlice(os.path.abspath(local), self.listed_shard, self.size, -1, self.first, self.starts,
                          self.want_cls)

    def listed(self) -> list[str]:
        """The samples' row paths (reads the range's headers: the master needs this only for give-ups)."""
        return read_slice(self)[0]


class SliceList:
    """Consecutive samples of several shards in one chunk (whole small shards, so a task is not tiny)."""

    __slots__ = ("parts",)

    def __init__(self, parts: list[ShardSlice]):
        self.parts = parts

    def __getstate__(self) -> list[ShardSlice]:
        return self.parts

    def __setstate__(self, state: list[ShardSlice]) -> None:
        self.parts = state

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, key: Any) -> "ShardSlice | SliceList":
        if not isinstance(key, slice):
            raise TypeError("a SliceList is split with sl[a:b]")
        a, b, _ = key.indices(len(self))
        out, pos = [], 0
        for p in self.parts:
            n = len(p)
            lo, hi = max(a - pos, 0), min(b - pos, n)
            if lo < hi:
                out.append(p[lo:hi])
            pos += n
        return out[0] if len(out) == 1 else SliceList(out)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SliceList) and self.parts == other.parts

    def listed(self) -> list[str]:
        return [x for p in self.parts for x in p.listed()]


SHARD_REFS = (ShardSlice, SliceList)


def read_refs(refs: ShardSlice | SliceList) -> tuple[list[str], list[Any], np.ndarray | None]:
    """``read_slice`` of one slice, or of each slice of a SliceList, joined."""
    if isinstance(refs, ShardSlice):
        return read_slice(refs)
    listed: list[str] = []
    sources: list[Any] = []
    cls: list[np.ndarray] = []
    for part in refs.parts:
        a, b, c = read_slice(part)
        listed += a
        sources += b
        if c is not None:
            cls.append(c)
    return listed, sources, (np.concatenate(cls) if cls else None)


def _bad_slice(sl: ShardSlice, text: str) -> tuple[list[str], list[Any], np.ndarray | None]:
    n = len(sl)
    listed = [f"{sl.listed_shard}/#{sl.first + i}" for i in range(n)]
    return listed, [ImageError("ShardChanged", text)] * n, (np.full(n, -1, np.int32) if sl.want_cls else None)


def _read_cls(fh: Any, m: Member) -> int:
    if m.size > MAX_CLS_BYTES:
        return -1
    fh.seek(m.offset)
    text = fh.read(m.size).strip()
    return int(text) if text.isdigit() else -1


def read_slice(sl: ShardSlice) -> tuple[list[str], list[Any], np.ndarray | None]:
    """(row paths, sources for the decoder, .cls class ids or None) of a slice's samples.

    The slice's byte range is walked again and must hold exactly the samples the index found there;
    if the shard changed since it was indexed, every sample is an error (``ShardChanged``).
    """
    n = len(sl)
    listed: list[str] = []
    sources: list[Any] = []
    cls = np.full(n, -1, np.int32) if sl.want_cls else None
    try:
        fh = open(sl.path, "rb", buffering=1 << 16)
    except OSError as exc:
        return _bad_slice(sl, f"cannot open the shard: {exc.strerror or exc}")
    with fh:
        size, mtime_ns = identity(fh)
        if size != sl.size or (sl.mtime_ns >= 0 and mtime_ns != sl.mtime_ns):
            return _bad_slice(sl, "the shard changed since it was indexed (size or modification time)")
        found = [s for s in samples(scan(fh, int(sl.starts[0]), int(sl.starts[-1]))) if isinstance(s, Sample)]
        if len(found) != n or any(s.start != int(sl.starts[i]) for i, s in enumerate(found)):
            return _bad_slice(sl, "the shard's samples are not where its index says (it changed since it was indexed)")
        prefix = sl.listed_shard + "/"
        for i, s in enumerate(found):
            m, err = s.image()
            listed.append(prefix + s.listed_name())
            if err is None and m is not None and m.truncated:
                err = ImageError("TruncatedShard", f"the shard ends {m.offset + m.size - sl.size} bytes into "
                                                   f"this member (it has {sl.size} bytes)")
            sources.append(err if err is not None else MemberRef(sl.path, m.offset, m.size))
            if cls is not None:
                c = s.cls_member()
                if c is not None:
                    try:
                        cls[i] = _read_cls(fh, c)
                    except (OSError, ValueError):
                        cls[i] = -1
    return listed, sources, cls
