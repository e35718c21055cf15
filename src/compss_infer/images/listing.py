"""Which files are images, and how to list them: a folder walked in sorted order, or a UTF-8 list file.

The walk never aborts and never drops a folder in silence: what it cannot list is named in its
``WalkNotes``.

Shared by the run's plan (run/inputs.py) and quantize's calibration set.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..core.errors import InputError, os_reason


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


@dataclass
class WalkNotes:
    """What a folder walk could not list, or listed once under another name: nothing is lost silently.

    ``unlisted``: (folder relative to the root, ending in ``/``; reason) for every folder whose
    entries could not be read (permission denied, a name too long, ESTALE/EIO on a network file
    system); its images are missing from the run, which therefore ends with exit code 1.
    ``repeated``: (linked folder, the folder it leads to) for a symlinked folder whose target was
    already walked (a loop, or a second link to one folder): its images are listed once, under the
    first name.
    """

    unlisted: list[tuple[str, str]] = field(default_factory=list)
    repeated: list[tuple[str, str]] = field(default_factory=list)

    def warnings(self, shown: int = 5) -> list[str]:
        """At most two lines, naming the first ``shown`` folders of each kind (long names cut)."""
        out = []
        if self.unlisted:
            named = "; ".join(f"{_cut(f)} ({why})" for f, why in self.unlisted[:shown])
            more = f"; and {len(self.unlisted) - shown} more" if len(self.unlisted) > shown else ""
            out.append(f"{len(self.unlisted)} folder(s) could not be listed, their images are not in the results: "
                       f"{named}{more}")
        if self.repeated:
            named = "; ".join(f"{_cut(f)} (the folder {_cut(t) or '.'})" for f, t in self.repeated[:shown])
            more = f"; and {len(self.repeated) - shown} more" if len(self.repeated) > shown else ""
            out.append(f"{len(self.repeated)} linked folder(s) lead to a folder already listed, not listed again: "
                       f"{named}{more}")
        return out


def _cut(name: str, keep: int = 60) -> str:
    """A folder name for a warning line: a 4,000-character path shows its two ends."""
    return name if len(name) <= 2 * keep + 3 else name[:keep] + "..." + name[-keep:]


def _entries(root: str, rel: str, notes: WalkNotes) -> list[tuple[str, bool, tuple[int, int] | None]]:
    """(sort key, is a folder, its (device, inode)) of one folder's entries, links followed; a folder
    that cannot be read is noted, not raised."""
    out = []
    try:
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for entry in it:  # reading on may fail too (EIO, ESTALE): what was read is kept
                ident = None
                try:
                    is_dir = entry.is_dir()  # follows a symlink: linked class folders are walked
                except OSError:
                    is_dir = False  # an unreadable link: listed if named like an image
                if is_dir:
                    try:
                        st = entry.stat()
                        ident = (st.st_dev, st.st_ino)
                    except OSError as exc:  # a folder we cannot enter (a name too long here, say)
                        notes.unlisted.append((rel + entry.name + "/", os_reason(exc)))
                        continue
                out.append((entry.name + "/" if is_dir else entry.name, is_dir, ident))
    except OSError as exc:
        notes.unlisted.append((rel or "./", os_reason(exc)))
    out.sort()
    return out


def _walk_sorted(root: str, notes: WalkNotes) -> Iterator[str]:
    """Depth-first walk that yields relative POSIX paths in plain lexicographic order.

    A folder ``a`` sorts as ``a/`` so that ``a-b.png`` < ``a/x.png`` as in a sorted listing of
    full paths.  Symlinked folders are followed; each folder (by device and inode) is walked once,
    so a link loop ends.  Iterative: any depth.
    """
    st = os.stat(root)
    seen: dict[tuple[int, int], str] = {(st.st_dev, st.st_ino): ""}
    stack = [("", iter(_entries(root, "", notes)))]
    while stack:
        rel, it = stack[-1]
        for key, is_dir, ident in it:
            if not is_dir:
                if is_image_name(key):
                    yield rel + key
                continue
            if ident is not None and ident in seen:
                notes.repeated.append((rel + key, seen[ident]))
                continue
            if ident is not None:
                seen[ident] = rel + key
            stack.append((rel + key, iter(_entries(root, rel + key, notes))))
            break
        else:
            stack.pop()


def discover(images_dir: str, notes: WalkNotes | None = None) -> Iterator[str]:
    """Image files under ``images_dir``, recursive, as relative POSIX paths in sorted order.

    Folders that cannot be listed, and links to folders already walked, go to ``notes``.
    """
    if not os.path.isdir(images_dir):
        raise InputError(f"--images: not a directory: {images_dir}")
    try:
        with os.scandir(images_dir):
            pass
    except OSError as exc:
        raise InputError(f"--images: cannot list {images_dir}: {os_reason(exc)}") from None
    return _walk_sorted(images_dir, notes if notes is not None else WalkNotes())


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
