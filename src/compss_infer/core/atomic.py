"""Atomic file writes: a temporary file beside the target, fsynced, then renamed over it.

Readers never see half a file (results, summaries, reports, models replaced during a run).
A symlink is followed: its target is replaced (the temporary file sits in the target's folder, so
the rename stays atomic) and the link stays.  A directory, device, FIFO or socket is never replaced.

``follow=False`` is for side files (summary, task log, report, sharded parts): the temporary file
is created with O_EXCL (never through a link) and renamed over the name itself, so a symlink
planted there is replaced, never its target.  ``replace=False`` publishes with a hard link, which
fails if the file appeared meanwhile (FileExistsError): never a silent overwrite.
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
def atomic_open(path: str, mode: str = "w", *, follow: bool = True, replace: bool = True,
                **kwargs: Any) -> Iterator[IO[Any]]:
    """``with atomic_open(p, "w") as fh: ...`` writes ``p`` completely or not at all."""
    path = target_of(path) if follow else os.path.abspath(path)
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
        if replace:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS)


def _publish_new(tmp: str, path: str) -> None:
    """Give ``tmp`` the name ``path`` only if nothing has it yet (link + unlink: atomic, no replace)."""
    try:
        os.link(tmp, path, follow_symlinks=False)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "appeared while this run worked (not replaced)", path) from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if os.path.lexists(path):  # a file system without hard links: check, then rename
            raise FileExistsError(errno.EEXIST, "appeared while this run worked (not replaced)", path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


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


def write_bytes(path: str, data: bytes, *, follow: bool = True) -> None:
    with atomic_open(path, "wb", follow=follow) as fh:
        fh.write(data)


def write_atomically(path: str, writer: Any, *, follow: bool = True) -> None:
    """Call ``writer(fh)`` on a text file that replaces ``path`` only once complete."""
    with atomic_open(path, "w", follow=follow, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        writer(fh)


def write_atomically_bytes(path: str, writer: Any, *, replace: bool = True) -> None:
    """Call ``writer(fh)`` on a binary file that replaces ``path`` only once complete."""
    with atomic_open(path, "wb", replace=replace) as fh:
        writer(fh)
