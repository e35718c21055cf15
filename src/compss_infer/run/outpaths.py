"""Where a run's files go, and the rules that keep other people's files safe from them.

- The results file ``OUT``: a symlink there is followed (its target is replaced, documented).
- Its journal and lock live beside the *resolved* file (``realpath(OUT).journal``), so two names
  for one file (``link.csv -> real.csv``, a folder reached through a link or a bind mount) share
  one journal, and the lock (``flock`` on a file in it: an inode) lets one run at a time write it.
- Side files (``OUT.summary.json``, ``OUT.tasks.csv``, the report's ``OUT.report.html`` and PNGs)
  are never written through a link: one found there refuses the run before any work, and the write
  itself replaces the name, never a target (core/atomic.py, ``follow=False``).
"""
from __future__ import annotations

import errno
import fcntl
import os
import stat

from ..core.errors import InputError

SIDE_SUFFIXES = (".summary.json", ".tasks.csv")
REPORT_SUFFIXES = (".report.html", ".timeline.png", ".throughput.png", ".confusion.png")


def resolved(output: str) -> str:
    """The file (for ``DIR/``, the folder, still ending in a separator) that ``output`` names."""
    if output.endswith(("/", os.sep)):
        return os.path.realpath(output.rstrip("/" + os.sep) or os.sep) + os.sep
    return os.path.realpath(output)


def journal_dir(output: str) -> str:
    """``OUT.journal`` beside the resolved results file (``DIR/.journal`` for sharded output)."""
    return resolved(output) + ".journal"


def journal_exists(output: str) -> bool:
    return os.path.isfile(os.path.join(journal_dir(output), "header.json"))


def journal_busy(output: str) -> bool:
    """Whether a run holds the journal's lock now (it writes the same file, under any name)."""
    try:
        fd = os.open(os.path.join(journal_dir(output), "lock"), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)  # closing drops a lock we took
    return False


def side_files(output: str, report: bool = False) -> list[str]:
    """The files a run writes beside ``output`` (beside the name given, links not followed)."""
    return [output + s for s in SIDE_SUFFIXES + (REPORT_SUFFIXES if report else ())]


def refuse_linked_side_files(output: str, report: bool = False) -> None:
    """Refuse (exit 2) a side file that is a symlink or not a regular file, or a linked journal folder."""
    refuse_links(side_files(output, report), f"--output {output}")
    jdir = journal_dir(output).rstrip(os.sep)
    if os.path.islink(jdir):
        raise InputError(f"--output {output}: {jdir} is a symbolic link: the journal is never written through "
                         "a link (remove it)")


def refuse_links(paths: list[str], what: str) -> None:
    """Refuse (exit 2) any of ``paths`` that is a symlink or exists and is not a regular file."""
    for side in paths:
        try:
            mode = os.lstat(side).st_mode
        except FileNotFoundError:
            continue
        except OSError:
            continue  # the write itself will say why
        if stat.S_ISLNK(mode):
            raise InputError(f"{what}: {side} is a symbolic link: side files are never written through a link "
                             "(remove it)")
        if not stat.S_ISREG(mode):
            raise InputError(f"{what}: {side} exists and is not a regular file")
