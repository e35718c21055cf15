"""Which files are images, and how to list them: a folder walked in sorted order, or a UTF-8 list file.

Shared by the run's plan (run/inputs.py) and quantize's calibration set.
"""
from __future__ import annotations

import os
import stat
from typing import Any, Iterator

from ..core.errors import InputError


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


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
_BOMS = [(b"\xff\xfe\x00\x00", "UTF-32-LE"), (b"\x00\x00\xfe\xff", "UTF-32-BE"),
         (b"\xff\xfe", "UTF-16-LE"), (b"\xfe\xff", "UTF-16-BE")]


def _likely_encoding(head: bytes) -> str:
    for bom, name in _BOMS:
        if head.startswith(bom):
            return f"{name} (it starts with a {name[:6]} byte-order mark)"
    if len(head) >= 4 and head[1:2] == b"\x00" and head[3:4] == b"\x00":
        return "UTF-16-LE (every other byte is NUL)"
    if len(head) >= 4 and head[0:1] == b"\x00" and head[2:3] == b"\x00":
        return "UTF-16-BE (every other byte is NUL)"
    return ""


def _refuse_list(list_file: str, line: int, why: str, head: bytes) -> InputError:
    enc = _likely_encoding(head)
    hint = f"; it looks like {enc}: save it as UTF-8" if enc else ""
    return InputError(f"--image-list {list_file} line {line}: {why}{hint}")


def list_blocks(list_file: str, fh: Any) -> Iterator[tuple[bytes, int]]:
    """(block of whole lines ending in a newline, number of raw lines before it), UTF-8 checked."""
    head = fh.read(4)
    fh.seek(0)
    if any(head.startswith(bom) for bom, _ in _BOMS):
        raise _refuse_list(list_file, 1, "not UTF-8", head)
    pending = b""
    lines_before = 0
    first = True
    while True:
        data = fh.read(1 << 22)
        blob = pending + data
        if not data:
            if not blob:
                return
            blob += b"\n"
            pending = b""
        else:
            cut = blob.rfind(b"\n") + 1
            blob, pending = blob[:cut], blob[cut:]
            if not blob:
                continue
        if first:
            first = False
            if blob.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark (Notepad) is not part of the path
                blob = blob[3:]
        nul = blob.find(b"\x00")
        if nul >= 0:
            raise _refuse_list(list_file, lines_before + blob.count(b"\n", 0, nul) + 1,
                               "holds a NUL byte, so it is not a UTF-8 text list", head)
        try:
            blob.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _refuse_list(list_file, lines_before + blob.count(b"\n", 0, exc.start) + 1,
                               f"not UTF-8 (byte 0x{blob[exc.start]:02x})", head) from None
        yield blob, lines_before
        lines_before += blob.count(b"\n")
        if not data:
            return


def check_list_file(list_file: str) -> None:
    try:
        st = os.stat(list_file)
    except OSError as exc:
        raise InputError(f"--image-list: cannot read {list_file}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"--image-list: not a regular file: {list_file}")


def read_list(list_file: str) -> Iterator[str]:
    """Paths from a list file, one per line, order kept; blank lines and ``#`` comments skipped.

    The list must be UTF-8 (a UTF-8 byte-order mark is allowed): UTF-16 from PowerShell, or any
    NUL byte, is refused with the line number before any work.
    """
    check_list_file(list_file)

    def lines() -> Iterator[str]:
        with open(list_file, "rb") as fh:
            for blob, _ in list_blocks(list_file, fh):
                for line in blob.decode("utf-8").split("\n")[:-1]:
                    line = line.rstrip("\r")
                    if line.strip() and not line.startswith("#"):
                        yield line
    return lines()
