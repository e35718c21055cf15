"""Atomic file writes: a temporary file beside the target, fsynced, then renamed over it.

Readers never see half a file (results, summaries, reports, models replaced during a run).
A symlink is followed: its target is replaced (the temporary file sits in the target's folder, so
the rename stays atomic) and the link stays.  A directory, device, FIFO or socket is never replaced.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import tempfile
from contextlib import contextmanager
from typing import IO, Any, Iterator


@contextmanager
def atomic_open(path: str, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``with atomic_open(p, "w") as fh: ...`` writes ``p`` completely or not at all."""
    path = target_of(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with io.open(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # as open() would have made it, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def target_of(path: str) -> str:
    """The file a write to ``path`` must replace: the link's target for a symlink; refuses
    (OSError naming the path) an existing non-regular file."""
    path = os.path.abspath(path)
    if os.path.islink(path):
        path = os.path.realpath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if not stat.S_ISREG(mode):
        raise OSError(errno.EEXIST, "exists and is not a regular file", path)
    return path


def write_bytes(path: str, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_atomically(path: str, writer: Any) -> None:
    """Call ``writer(fh)`` on a text file that replaces ``path`` only once complete."""
    with atomic_open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        writer(fh)


def write_atomically_bytes(path: str, writer: Any) -> None:
    """Call ``writer(fh)`` on a binary file that replaces ``path`` only once complete."""
    with atomic_open(path, "wb") as fh:
        writer(fh)
