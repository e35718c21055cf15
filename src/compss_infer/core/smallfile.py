"""Read a small input file someone else may have named: a regular file of bounded size, or a refusal.

Opening a FIFO for reading waits for a writer (forever), and ``/dev/zero`` never ends; so the
file is opened non-blocking, checked with ``fstat`` on the open descriptor (no race with a rename),
and read up to its limit plus one byte.
"""
from __future__ import annotations

import os
import stat


class SmallFileError(ValueError):
    """The path is not a regular file, or is larger than allowed; the text completes ``<path> ...``."""


def describe_mode(mode: int) -> str:
    """``is a FIFO``, ``is a directory``, ... for a file that is not a regular file."""
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return f"is {what}"
    return "is not a regular file"


def read_small_file(path: str, limit: int) -> bytes:
    """The bytes of ``path``; OSError when it cannot be opened, SmallFileError when it is not a
    regular file or holds more than ``limit`` bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SmallFileError(f"{describe_mode(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise SmallFileError(f"is {st.st_size:,} bytes, more than the {limit:,} allowed")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while we read it
        raise SmallFileError(f"is more than the {limit:,} bytes allowed")
    return data
