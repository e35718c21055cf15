"""Find the processes a COMPSs task of ours left on this machine: node servers, forkservers, workers.

They are told apart from other users' (7 agents share this machine) by their environment: every one
inherits ``TMPDIR`` from the executors of the test, which the ``master`` fixture points at the
test's own folder.  A zombie (dead, waiting for init to reap it) is not a process left running.
"""
from __future__ import annotations

import os
import time

import psutil

SERVER = "compss_infer.engines.nodeserver"
FORKSERVER = "multiprocessing.forkserver import main"
TRACKER = "multiprocessing.resource_tracker import main"


def ours(tmp: str, exclude: tuple[int, ...] = ()) -> list[psutil.Process]:
    """Live processes whose TMPDIR is ``tmp`` (the test's executors included, unless excluded).

    The test process itself is the master, not part of a node: its own resource tracker (started
    by its model check, which lives as long as the test process) is not counted either.
    """
    found = []
    for p in psutil.process_iter(["pid", "ppid"]):
        if p.pid in exclude or p.pid == os.getpid():
            continue
        try:
            if p.status() == psutil.STATUS_ZOMBIE or p.environ().get("TMPDIR") != tmp:
                continue
            if p.info["ppid"] == os.getpid() and kind(p) == "tracker":
                continue
            found.append(p)
        except psutil.Error:
            continue
    return found


def kind(p: psutil.Process) -> str:
    """server | forkserver | worker | tracker | other."""
    try:
        cmd = " ".join(p.cmdline())
        if SERVER in cmd:
            return "server"
        if TRACKER in cmd:
            return "tracker"
        if FORKSERVER in cmd:  # a worker is forked by the forkserver: same command line, forkserver parent
            parent = p.parent()
            return "worker" if parent is not None and FORKSERVER in " ".join(parent.cmdline()) else "forkserver"
    except psutil.Error:
        pass
    return "other"


def of_kind(tmp: str, name: str, model: str | None = None) -> list[psutil.Process]:
    """Our processes of kind ``name``; with ``model``, only those of the servers of that model file."""
    return [p for p in ours(tmp) if kind(p) == name and (model is None or _serves(p, model))]


def _serves(p: psutil.Process, model: str) -> bool:
    """Whether ``p`` is, or descends from, a node server of ``model`` (its command line names it)."""
    try:
        while p is not None:
            if kind(p) == "server":
                return f'"model": "{model}"' in " ".join(p.cmdline())
            p = p.parent()
    except psutil.Error:
        pass
    return False


def wait_for(tmp: str, name: str, timeout: float = 60.0, model: str | None = None) -> psutil.Process:
    """The first process of kind ``name`` to appear (of the servers of ``model``, if given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = of_kind(tmp, name, model)
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {name} process appeared within {timeout:g}s")


def strays(tmp: str, executors: tuple[int, ...] = (), within: float = 5.0) -> list[str]:
    """What is still running ``within`` seconds from now, apart from the given executors: [] is clean."""
    deadline = time.monotonic() + within
    while True:
        left = ours(tmp, exclude=executors)
        if not left or time.monotonic() >= deadline:
            return [f"{kind(p)} {p.pid}: {' '.join(p.cmdline())[:120]}" for p in left if p.is_running()]
        time.sleep(0.1)


def folders_left(tmp: str, servers: list[int]) -> list[str]:
    """The private folders of these node servers still on disk (in ``tmp``, or /tmp when ``tmp`` is long)."""
    return [os.path.join(base, f"compss-infer-node-{pid}") for pid in servers for base in (tmp, "/tmp")
            if os.path.exists(os.path.join(base, f"compss-infer-node-{pid}"))]
