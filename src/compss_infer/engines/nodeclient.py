"""A COMPSs task's side of the node server: find (or start) it, hand it the chunk, wait within a bound.

The server (:mod:`.nodeserver`) is keyed by what shapes a loaded model: the worker spec, the task's
threads (``COMPSS_NUM_THREADS``) and its GPU (``CUDA_VISIBLE_DEVICES``).  Its address is an
abstract Unix socket (no file to leave behind), named from a digest of that key and of this
installation, so every executor of the node that runs the same model on the same device finds the
same server.  Both ends check the other's user id (``SO_PEERCRED``) before trusting a pickle.

Every wait here is bounded:

* a server that does not listen within :data:`START_S` of being started: ``Timeout``;
* a chunk with a limit gets no more than ``limit + load + GRACE_S`` from the moment the task
  started; the server answers within ``limit + load`` itself, so reaching this backstop means the
  server is wedged: it is killed (its forkserver and workers go with it) and the chunk is a
  ``Timeout``;
* a server that dies gives EOF at once: ``WorkerCrashed``.

Whatever interrupts the wait (the runtime's ``TimeOutError`` or ``CancelError``) closes the
connection, which tells the server to kill the worker running this chunk.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing import connection
from typing import Any, Sequence

from ..core.contracts import ChunkResult, TaskError, WorkerSpec
from ..images.shards import SHARD_REFS

SERVER_MODULE = "compss_infer.engines.nodeserver"
START_S = 30.0  # a new server listens within this (a Python start-up and light imports: well under 1 s)
GRACE_S = 10.0  # the backstop: the server's own limit (limit + load) plus this
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid
_USED: dict[str, WorkerSpec] = {}  # the servers this process holds a lease on, and their specs


@dataclass(frozen=True)
class ServerKey:
    """What one server serves: a model spec, on ``threads`` CPU threads, on GPU ``gpu`` (None: CPU)."""

    spec: WorkerSpec
    threads: str | None
    gpu: str | None

    @classmethod
    def for_task(cls, spec: WorkerSpec) -> "ServerKey":
        """The key of a task running now: its threads and GPU come from the environment COMPSs set."""
        return cls(spec, os.environ.get("COMPSS_NUM_THREADS"), os.environ.get("CUDA_VISIBLE_DEVICES"))

    def address(self) -> str:
        """The abstract socket name: this key, this user, this Python and this installation."""
        env = tuple(os.environ.get(k) for k in ("PYTHONPATH", "TMPDIR"))
        text = repr((os.getuid(), sys.executable, _PACKAGE, env, self.spec, self.threads, self.gpu))
        return "\0compss-infer-node-" + hashlib.sha256(text.encode()).hexdigest()[:40]

    def server_config(self) -> dict[str, Any]:
        from ..model.formats import preload_modules
        threads = max(1, int(self.threads)) if (self.threads or "").isdigit() else 1
        return {"address": self.address(), "model": self.spec.model.path, "gpu": self.gpu, "threads": self.threads,
                "preload": preload_modules(self.spec.model.path),
                # one worker per GPU; on CPUs one per chunk running at once (COMPSs keeps that to the
                # node's units / units per task), with room for more units declared than there are cores
                "max_workers": 1 if self.gpu is not None else max(2, 2 * (os.cpu_count() or 1) // threads)}


def peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket."""
    pid, uid, _ = _CREDS.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDS.size))
    return pid, uid


def run_chunk(spec: WorkerSpec, paths: Sequence[str], limit: float = 0, load: float = 0) -> ChunkResult | TaskError:
    """Classify ``paths`` on this node's server for ``spec``: a ChunkResult, or a TaskError saying why not."""
    started = time.monotonic()
    key = ServerKey.for_task(spec)
    release([address for address, held in _USED.items() if held != spec])  # another model now: let those end
    backstop = started + limit + load + GRACE_S if limit else None
    found = _connect(key, min(started + START_S, backstop or float("inf")))
    if isinstance(found, TaskError):
        return found
    conn, server = found
    try:
        items = paths if isinstance(paths, SHARD_REFS) else list(paths)  # a shard slice travels as it is
        conn.send(("run", spec, items, float(limit), float(load)))
        while True:
            wait = 1.0 if backstop is None else max(0.0, min(1.0, backstop - time.monotonic()))
            if connection.wait([conn], wait):
                try:
                    return conn.recv()
                except (EOFError, OSError):
                    return TaskError(f"WorkerCrashed: the node's inference server (process {server}) ended without "
                                     f"answering", host=socket.gethostname())
            if backstop is not None and time.monotonic() >= backstop:
                _kill(server)
                return TaskError(f"Timeout: the node's inference server (process {server}) gave no answer within "
                                 f"{backstop - started:.0f}s (the chunk's limit, the loading allowance and "
                                 f"{GRACE_S:g}s); it was killed", host=socket.gethostname())
    except OSError as exc:  # the server went away while we talked to it
        return TaskError(f"WorkerCrashed: lost the node's inference server (process {server}): {exc}",
                         host=socket.gethostname())
    finally:
        conn.close()  # also when TimeOutError/CancelError interrupt the wait: the server kills the chunk's worker


def release(addresses: Sequence[str] | None = None) -> None:
    """Give back this process's leases (all, or on these servers): a server with no live client left ends."""
    for address in list(_USED) if addresses is None else addresses:
        _USED.pop(address, None)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(address)
                if peer(sock)[1] != os.getuid():
                    continue
                conn = connection.Connection(sock.detach())
            conn.send(("release",))
            conn.close()
        except OSError:
            pass


def _connect(key: ServerKey, deadline: float) -> tuple[connection.Connection, int] | TaskError:
    """A connection to the key's server, starting one if none listens; a TaskError when none comes up."""
    address = key.address()
    started: list[int] = []
    since = time.monotonic()
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(0.1, deadline - time.monotonic()))  # a full backlog (a wedged server) blocks connect
        try:
            sock.connect(address)
            sock.settimeout(None)
        except (ConnectionRefusedError, FileNotFoundError, socket.timeout):
            sock.close()
            now = time.monotonic()
            if now >= deadline:
                return TaskError(f"Timeout: no inference server for this model listened on the node within "
                                 f"{now - since:.0f}s (started: {started or 'none'})", host=socket.gethostname())
            if not started or (not alive(started[-1]) and len(started) < 3):
                started.append(_start(key, deadline - now))
            time.sleep(0.05)
            continue
        pid, uid = peer(sock)
        if uid != os.getuid():
            sock.close()
            return TaskError(f"WorkerCrashed: the node's inference server address is held by another user's "
                             f"process {pid}", host=socket.gethostname())
        _USED[address] = key.spec
        return connection.Connection(sock.detach()), pid


def _start(key: ServerKey, within: float) -> int:
    """Start a server (it detaches itself and prints its pid); 0 if it did not say."""
    env = dict(os.environ)
    # the executor may import us through its sys.path only (runcompss --pythonpath): the server needs it too
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(_PACKAGE)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if key.threads:
        env["COMPSS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = key.threads
    cmd = [sys.executable, *subprocess._args_from_interpreter_flags(), "-m", SERVER_MODULE,
           json.dumps(key.server_config())]
    try:  # cwd "/": a task's cwd is its sandbox, which COMPSs deletes after the job
        proc = subprocess.Popen(cmd, env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    except OSError:  # no fork now (memory, process limit): the caller tries again until its deadline
        return 0
    try:
        out, _ = proc.communicate(timeout=max(1.0, within))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return 0
    text = out.decode(errors="replace").strip()
    return int(text) if text.isdigit() else 0


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, dead but not yet reaped, is not)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
