"""Tie a process's life to its parent's: no worker or forkserver of ours outlives what started it.

``PR_SET_PDEATHSIG`` asks the kernel to send a signal when the parent dies, even by SIGKILL, when
nothing in Python could react.  Two catches, both handled here or by the callers:

* the signal fires when the parent *thread* ends, not the parent process: so the processes that
  use it (a forkserver, a pool worker) must be started by a thread that lives as long as its
  process (a main thread, or the node server's spawner thread, which never ends);
* the parent may already be gone when the child asks: the child then checks ``getppid`` and leaves.

Not Linux (or no libc): nothing happens, and the usual pipe-EOF rules still end the processes.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask for ``sig`` when the parent dies; leave at once if it already has.  True if armed."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        armed = libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    if armed and os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
    return armed
