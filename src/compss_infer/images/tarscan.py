"""Tar headers read by offset: the members of a tar file (or of a byte range of one), never its data.

Why not the standard library's ``tarfile``: it stops at the first bad header (everything after it is
lost), it cannot start in the middle of an archive, and it builds a TarInfo per member.  This reader
walks the 512-byte headers with seeks (a shard's images are never read here), understands ustar, GNU
long names and pax ``path``/``size`` records, and turns every problem into a :class:`Damage` value:
a corrupt header is skipped by looking for the next valid header (``ustar`` magic at a block
boundary, checksum right), a file that ends early says where.  The same walk runs when a shard is
indexed and when a worker reads a slice of it, so both see the same members.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator, NamedTuple

BLOCK = 512
MAX_EXTENSION = 1 << 20  # a pax record or GNU long name larger than this is treated as damage
REGULAR = (b"0", b"\x00", b"7")
EXTENSIONS = (b"x", b"g", b"L", b"K")


class Member(NamedTuple):
    """One tar member: ``header`` is where its first header (pax/long-name ones included) starts."""

    name: str
    kind: str  # file | dir | link | other
    header: int
    offset: int  # first byte of its data
    size: int
    truncated: bool = False  # its data runs past the end of the file


@dataclass(frozen=True)
class Damage:
    """Bytes of the archive that could not be read as tar: ``what`` says why, in one line."""

    start: int
    stop: int
    what: str


def _octal(field: bytes) -> int | None:
    """A numeric header field: octal ASCII, or GNU base-256 (first byte 0x80)."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\x00", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        return None


def _byte_sum(data: bytes) -> int:
    """Sum of up to 256 bytes in C: Adler-32's low half is 1 + the sum (exact below 65,521)."""
    return (zlib.adler32(data) & 0xFFFF) - 1


def _checksum_ok(block: bytes) -> bool:
    stored = _octal(block[148:156])
    if stored is None:
        return False
    # the checksum field itself counts as 8 spaces (256)
    unsigned = _byte_sum(block[:148]) + 256 + _byte_sum(block[156:412]) + _byte_sum(block[412:512])
    return stored == unsigned


def _name(block: bytes) -> str:
    name = block[0:100].split(b"\x00", 1)[0]
    if block[257:263] == b"ustar\x00":  # POSIX ustar (GNU tar's "ustar  " has no prefix field)
        prefix = block[345:500].split(b"\x00", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, str]:
    """``"%d key=value\\n"`` records (values UTF-8)."""
    out, pos = {}, 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        try:
            length = int(data[pos:sp])
        except ValueError:
            break
        if length <= 0:
            break
        record = data[sp + 1:pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def _kind(flag: bytes) -> str:
    if flag in REGULAR:
        return "file"
    if flag == b"5":
        return "dir"
    if flag in (b"1", b"2"):
        return "link"
    return "other"


class _Reader:
    """pread-style access with one buffered file object (seeks within the buffer cost no syscall)."""

    def __init__(self, fh: BinaryIO, size: int):
        self.fh, self.size = fh, size

    def read(self, offset: int, n: int) -> bytes:
        self.fh.seek(offset)
        return self.fh.read(n)


def _resync(r: _Reader, start: int, limit: int) -> int | None:
    """Offset of the next valid header after a corrupt one at ``start`` (before ``limit``), else None."""
    pos = start + BLOCK
    step = 1 << 20
    while pos < limit:
        buf = r.read(pos, min(step, limit - pos))
        if not buf:
            return None
        i = buf.find(b"ustar")
        while i >= 0:
            h = pos + i - 257
            if h >= start + BLOCK and h % BLOCK == 0:
                block = r.read(h, BLOCK)
                if len(block) == BLOCK and _checksum_ok(block):
                    return h
            i = buf.find(b"ustar", i + 1)
        pos += max(BLOCK, len(buf) - BLOCK)  # overlap: a magic cut at the buffer's end is found next time
    return None


def scan(fh: BinaryIO, start: int = 0, stop: int | None = None) -> Iterator[Member | Damage]:
    """The members whose first header lies in [start, stop), in order, and the damage met on the way.

    ``stop`` None: to the end-of-archive marker (or the end of the file, which is then reported:
    an archive that just stops may have lost its tail).  A member that starts before ``stop`` is
    yielded whole, even when its data runs past ``stop``.
    """
    size = os.fstat(fh.fileno()).st_size
    r = _Reader(fh, size)
    limit = size if stop is None else min(stop, size)
    pos = start
    first_header: int | None = None  # of the member being assembled (pax / long-name headers first)
    long_name: str | None = None
    pax: dict[str, str] = {}
    while pos < limit:
        block = r.read(pos, BLOCK)
        if len(block) < BLOCK:
            yield Damage(pos, size, f"the file ends inside a tar header at byte {pos} (truncated)")
            return
        if block == bytes(BLOCK):
            return  # the end-of-archive marker
        if not _checksum_ok(block):
            nxt = _resync(r, pos, size)
            end = nxt if nxt is not None else size
            yield Damage(pos, end, f"a corrupt tar header (bad checksum) at byte {pos}: bytes {pos}-{end} "
                                   f"skipped, the members stored there are lost")
            first_header, long_name, pax = None, None, {}
            if nxt is None:
                return
            pos = nxt
            continue
        flag = block[156:157]
        n = _octal(block[124:136])
        if first_header is None:
            first_header = pos
        if flag in EXTENSIONS:
            if n is None or n > MAX_EXTENSION or pos + BLOCK + n > size:
                yield Damage(pos, size, f"an unreadable tar extension header at byte {pos}: the rest of the "
                                        f"file (bytes {pos}-{size}) is unread")
                return
            data = r.read(pos + BLOCK, n)
            if flag == b"L":
                long_name = data.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
            elif flag == b"x":
                pax.update(_pax(data))
            pos += BLOCK + -(-n // BLOCK) * BLOCK
            continue
        name = pax.get("path") or long_name or _name(block)
        if "size" in pax:
            try:
                n = int(pax["size"])
            except ValueError:
                n = None
        if n is None:
            yield Damage(pos, size, f"a tar header with an unreadable size at byte {pos}: the rest of the file "
                                    f"(bytes {pos}-{size}) is unread")
            return
        kind = _kind(flag)
        if kind != "file":
            n_data = 0 if kind in ("dir", "link") else n
        else:
            n_data = n
        data_at = pos + BLOCK
        truncated = data_at + n_data > size
        yield Member(name, kind, first_header, data_at, n_data, truncated)
        if truncated:
            yield Damage(data_at, size, f"the file ends inside member {name} at byte {size} "
                                        f"({data_at + n_data - size} bytes missing: truncated)")
            return
        first_header, long_name, pax = None, None, {}
        pos = data_at + -(-n_data // BLOCK) * BLOCK
    if stop is None and pos >= size:
        yield Damage(size, size, f"no end-of-archive marker after byte {size}: the shard may be truncated "
                                 f"(members after that point, if any, are lost)")
