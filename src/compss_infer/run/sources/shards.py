"""Tar shards in: ``--shards SPEC`` -> the ordered shards, their indexes, and chunks that are shard slices.

SPEC is a brace pattern (``data/{00000..00999}.tar``), a folder (its ``.tar`` files, sorted), one
``.tar`` file, or a list file (one shard path per line, relative ones against the list's folder).
Planning is per shard, never per image: each shard is checked here (there, a regular file, not
compressed), before any work.  Then every shard is indexed by a worker (``images.shards.index_shard``,
as engine tasks, all workers at once): the master keeps, per shard, only the sample count and the
samples' start offsets, on disk in the journal (``index.bin``), and cuts chunks from them: a chunk is
a :class:`~compss_infer.images.shards.ShardSlice`, never a list of names.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ...core.errors import ConfigError, InputError
from ...images.shards import ShardIndex, ShardSlice, SliceList, index_shard
from ..inputs import Chunk, chunk_bounds, subtract

log = logging.getLogger("compss_infer")
COMPRESSED_NAMES = (".tar.gz", ".tgz", ".gz", ".tar.bz2", ".tbz2", ".bz2", ".tar.xz", ".txz", ".xz", ".tar.zst",
                    ".zst", ".zstd", ".lz4")
COMPRESSED_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
                    (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x04\x22\x4d\x18", "lz4"))
INDEX_FILE = "index.bin"
INDEX_RETRIES = 2
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def expand_braces(pattern: str) -> list[str]:
    """``a{00..02}b{x,y}`` -> a00bx a00by a01bx ... (zero padding kept, as WebDataset's braceexpand)."""
    m = _BRACE.search(pattern)
    if m is None:
        return [pattern]
    body = m.group(1)
    rng = _RANGE.match(body)
    if rng:
        lo, hi = int(rng.group(1)), int(rng.group(2))
        width = len(rng.group(1)) if rng.group(1).startswith("0") else 0
        step = 1 if hi >= lo else -1
        options = [str(i).zfill(width) for i in range(lo, hi + step, step)]
    elif "," in body:
        options = body.split(",")
    else:
        raise ConfigError(f"--shards {pattern}: {{{body}}} is neither a range (00000..00999) nor a list (a,b)")
    head, tail = pattern[:m.start()], pattern[m.end():]
    return [x for opt in options for x in expand_braces(head + opt + tail)]


def _compressed_name(name: str) -> bool:
    return name.lower().endswith(COMPRESSED_NAMES)


def _refuse_compressed(shard: str, how: str) -> InputError:
    return InputError(f"--shards: {shard} is {how}: compressed shards are not read (a member cannot be reached by "
                      f"its offset without decompressing everything before it); decompress the shards first "
                      f"(gunzip keeps a plain .tar)")


def listed_shards(spec: str, base: str) -> list[tuple[str, str]]:
    """(as the user wrote it, where it is relative to ``base`` or absolute) of each shard of SPEC, in order.

    A list file's lines are shown as written, like ``--image-list``'s, and found against the list's folder.
    """
    where = spec if os.path.isabs(spec) else os.path.join(base, spec)
    if "{" in spec:
        return [(x, x) for x in expand_braces(spec)]
    if os.path.isdir(where):
        names = sorted(os.listdir(where))
        packed = [n for n in names if _compressed_name(n)]
        if packed:
            raise _refuse_compressed(os.path.join(spec, packed[0]), f"compressed ({len(packed)} such file(s) in "
                                                                    f"the folder)")
        shards = [os.path.join(spec, n) for n in names if n.lower().endswith(".tar")]
        if not shards:
            raise InputError(f"--shards {spec}: the folder holds no .tar files")
        return [(x, x) for x in shards]
    if _compressed_name(spec):
        raise _refuse_compressed(spec, "compressed (by its name)")
    if spec.lower().endswith(".tar"):
        return [(spec, spec)]
    if not os.path.exists(where):
        raise InputError(f"--shards {spec}: not found (a brace pattern, a folder of .tar files, a .tar file or a "
                         f"list file)")
    return _read_shard_list(spec, where)


def _read_shard_list(spec: str, where: str) -> list[tuple[str, str]]:
    try:
        with open(where, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise InputError(f"--shards {spec}: cannot read the list: {exc.strerror or exc}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"--shards {spec} line {line}: not UTF-8 (save the list as UTF-8)") from None
    if "\x00" in text:
        raise InputError(f"--shards {spec}: holds a NUL byte, so it is not a list of shard paths")
    folder = os.path.dirname(spec)
    out = []
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if line.strip() and not line.startswith("#"):
            out.append((line, line if os.path.isabs(line) or not folder else os.path.join(folder, line)))
    if not out:
        raise InputError(f"--shards {spec}: the list names no shards")
    return out


@dataclass
class Shard:
    listed: str  # as the user gave it: rows say <listed>/<member name>
    path: str  # absolute
    size: int
    mtime_ns: int
    count: int = -1  # samples, once indexed
    base: int = 0  # the row of its first sample
    index_at: int = -1  # offset of its record in index.bin
    damage: list[str] = field(default_factory=list)


def _check_shard(listed: str, path: str) -> tuple[int, int] | str:
    """(size, mtime_ns) of a usable shard, else the reason it is refused."""
    if _compressed_name(listed):
        return "compressed"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        head = os.pread(fd, 8, 0)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    finally:
        os.close(fd)
    for magic, name in COMPRESSED_MAGIC:
        if head.startswith(magic):
            return f"compressed ({name} data)"
    return st.st_size, st.st_mtime_ns


@dataclass
class ShardPlan:
    """The ordered shards of a run; ``count`` (samples) is known once every shard is indexed."""

    path: str  # the plan file: one JSON line per shard
    base: str
    digest: str
    shards: list[Shard]
    count: int | None = None

    @property
    def damaged(self) -> list[str]:
        return [f"{s.listed}: {d}" for s in self.shards for d in s.damage]


def plan_shards(spec: str, base: str, plan_path: str) -> ShardPlan:
    """Check every shard (refusing missing, unreadable or compressed ones before any work) and write the plan."""
    shards: list[Shard] = []
    refused: dict[str, list[str]] = {}
    for listed, found in listed_shards(spec, base):
        path = os.path.normpath(os.path.join(base, found))
        checked = _check_shard(listed, path)
        if isinstance(checked, str):
            refused.setdefault(checked, []).append(listed)
            continue
        shards.append(Shard(listed, path, *checked))
    if refused:
        why, names = next(iter(refused.items()))
        if why.startswith("compressed"):
            raise _refuse_compressed(names[0], why)
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        what = "shard not found" if why == "missing" else f"shard {why}"
        raise InputError(f"--shards {spec}: {what}: {names[0]}{more}")
    digest = hashlib.sha256()
    tmp = plan_path + ".tmp"
    with open(tmp, "wb") as fh:
        for s in shards:
            line = json.dumps({"listed": s.listed, "path": s.path, "size": s.size, "mtime_ns": s.mtime_ns},
                              ensure_ascii=False).encode("utf-8", "surrogateescape") + b"\n"
            fh.write(line)
            digest.update(line)
    os.replace(tmp, plan_path)
    return ShardPlan(path=plan_path, base=base, digest=digest.hexdigest(), shards=shards)


# ----------------------------------------------------------------------------- the index, in the journal

_REC = struct.Struct("<4sIQQqI")  # magic, shard number, size, mtime_ns, samples, payload crc
_MAGIC = b"CIX1"


class IndexStore:
    """``OUT.journal/index.bin``: one CRC-checked record per indexed shard (meta JSON + start offsets)."""

    def __init__(self, journal_dir: str):
        self.path = os.path.join(journal_dir, INDEX_FILE)
        self._fh: Any = None

    def append(self, k: int, ix: ShardIndex) -> int:
        """Append shard ``k``'s index; ``close`` makes the file durable (the run's header comes after it)."""
        meta = json.dumps({"damage": ix.damage}).encode()
        payload = struct.pack("<I", len(meta)) + meta + np.ascontiguousarray(ix.starts, "<i8").tobytes()
        if self._fh is None:
            self._fh = open(self.path, "ab")
        offset = self._fh.tell()
        self._fh.write(_REC.pack(_MAGIC, k, ix.size, ix.mtime_ns, ix.count, zlib.crc32(payload)) +
                       struct.pack("<Q", len(payload)) + payload)
        return offset

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def scan(self) -> Iterator[tuple[int, int, int, int, int, list[str]]]:
        """(shard, offset, size, mtime_ns, samples, damage) of every intact record."""
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as fh:
            while True:
                offset = fh.tell()
                head = fh.read(_REC.size + 8)
                if len(head) < _REC.size + 8:
                    return
                magic, k, size, mtime, count, crc = _REC.unpack_from(head)
                (plen,) = struct.unpack_from("<Q", head, _REC.size)
                payload = fh.read(plen)
                if magic != _MAGIC or len(payload) != plen or zlib.crc32(payload) != crc:
                    return  # a torn tail: what follows is indexed again
                (mlen,) = struct.unpack_from("<I", payload)
                yield k, offset, size, mtime, count, json.loads(payload[4:4 + mlen])["damage"]

    def starts(self, offset: int, fh: Any) -> np.ndarray:
        """Shard start offsets of the record at ``offset``, read through ``fh`` (this file, opened once)."""
        fh.seek(offset)
        head = fh.read(_REC.size + 8)
        (plen,) = struct.unpack_from("<Q", head, _REC.size)
        payload = fh.read(plen)
        (mlen,) = struct.unpack_from("<I", payload)
        return np.frombuffer(payload, "<i8", offset=4 + mlen).astype(np.int64)


def index_all(plan: ShardPlan, engine: Any, journal_dir: str, window: int) -> None:
    """Index every shard not indexed yet, on the engine's workers; then number the samples (``count``, bases).

    A shard whose index task keeps failing (its worker dies on it) counts as a damaged shard with no
    samples: a summary line says so.
    """
    store = IndexStore(journal_dir)
    done = {k: (off, size, mtime, count, damage) for k, off, size, mtime, count, damage in store.scan()}
    todo = [k for k in range(len(plan.shards)) if k not in done]
    tries: dict[int, int] = {}
    inflight: set[int] = set()
    while todo or inflight:
        while todo and len(inflight) < window:
            k = todo.pop(0)
            inflight.add(k)
            engine.submit(("index", k), index_shard, plan.shards[k].path, plan.shards[k].size)
        for outcome in engine.poll(0.5):
            k = outcome.key[1]
            inflight.discard(k)
            ix = outcome.value
            if outcome.failure is None and isinstance(ix, ShardIndex):
                off = store.append(k, ix)
                done[k] = (off, ix.size, ix.mtime_ns, ix.count, ix.damage)
                continue
            tries[k] = tries.get(k, 0) + 1
            text = outcome.failure or f"the index task returned a {type(ix).__name__}"
            if tries[k] <= INDEX_RETRIES:
                log.warning("indexing %s failed (%s); retrying", plan.shards[k].listed, text)
                todo.insert(0, k)
                continue
            s = plan.shards[k]
            failed = ShardIndex(s.path, s.size, s.mtime_ns, np.zeros(1, np.int64), [f"could not be indexed ({text}): "
                                                                                   f"all its samples are lost"])
            done[k] = (store.append(k, failed), s.size, s.mtime_ns, 0, failed.damage)
    store.close()
    base = 0
    for k, s in enumerate(plan.shards):
        off, _, _, count, damage = done[k]  # the plan's identity stays: a slice of a changed shard is refused
        s.index_at, s.count, s.damage, s.base = off, count, list(damage), base
        base += count
    plan.count = base
    for line in plan.damaged:
        log.warning("%s", line)


def iter_shard_chunks(plan: ShardPlan, journal_dir: str, chunk_size: int, covered: list[tuple[int, int]] | None = None,
                      first: int | None = None, want_cls: bool = False, span: bool = True) -> Iterator[Chunk]:
    """Chunks in order, skipping ``covered`` ranges: slices cut within each shard (the first shard's start
    small), and with ``span`` consecutive whole small shards joined up to ``chunk_size`` samples (a
    :class:`SliceList`), so 1,000-sample shards do not make 1,000-sample tasks."""
    pending: list[Chunk] = []
    size = 0
    lead = first is not None  # the small first chunk (an early first result) stays alone
    for c in _shard_pieces(plan, journal_dir, chunk_size, covered, first, want_cls):
        n = len(c.paths)
        if pending and (not span or lead or size + n > chunk_size or pending[-1].stop != c.start):
            yield _joined(pending)
            pending, size, lead = [], 0, False
        pending.append(c)
        size += n
    if pending:
        yield _joined(pending)


def _joined(pieces: list[Chunk]) -> Chunk:
    if len(pieces) == 1:
        return pieces[0]
    return Chunk(start=pieces[0].start, paths=SliceList([p.paths for p in pieces]))


def _shard_pieces(plan: ShardPlan, journal_dir: str, chunk_size: int, covered: list[tuple[int, int]] | None,
                  first: int | None, want_cls: bool) -> Iterator[Chunk]:
    store = IndexStore(journal_dir)
    covered = sorted(covered or [])
    leading = True
    with open(store.path, "rb") as fh:
        for s in plan.shards:
            if s.count <= 0:
                continue
            starts = None
            for a, b in chunk_bounds(s.count, chunk_size, first if leading else None):
                for ga, gb in subtract(s.base + a, s.base + b, covered):
                    if starts is None:
                        starts = store.starts(s.index_at, fh)
                    i, j = ga - s.base, gb - s.base
                    yield Chunk(start=ga, paths=ShardSlice(s.path, s.listed, s.size, s.mtime_ns, i,
                                                           starts[i:j + 1], want_cls))
            leading = False


def check_part_names(plan: ShardPlan, fmt: str) -> None:
    """With ``--output DIR/`` each shard gets a part named after it: two shards may not share a name."""
    from ..sinks.parts import part_name
    seen: dict[str, str] = {}
    for s in plan.shards:
        name = part_name(s.listed, fmt)
        if name in seen:
            raise InputError(f"--output DIR/: shards {seen[name]} and {s.listed} would both write the part {name}; "
                             f"give the shards distinct file names, or write one results file")
        seen[name] = s.listed
