"""One inference server per node, model, device and thread count, shared by the node's COMPSs executors.

Why (docs/cluster.md, "Memory per node"): the real runtime forks one executor per CPU unit of a
node and gives the next task to any idle executor, with whichever GPU is free.  A model loaded per
executor costs a TensorFlow process per executor (a CUDA context each, on GPUs), and a GPU model
held by an executor must be rebuilt whenever that executor is handed another GPU.  So executors own
no model: the first task that needs one on a device starts this server (``nodeclient``), and every
executor of the node hands its chunks to it over a local socket.

The processes, all ours, and how each ends:

    server (detached; ends within a second of the last executor that used it, or at SIGTERM;
            an executor handed another model lets go of the old model's servers)
      |- forkserver (TensorFlow or LiteRT imported once; dies with the server: PR_SET_PDEATHSIG)
      |    `- workers (one loaded model each; die with the forkserver: PR_SET_PDEATHSIG)
      `- resource tracker (multiprocessing's; ends when all of the above have)

A GPU server keeps one worker on its GPU.  A CPU server keeps one worker per chunk running at once
(COMPSs keeps that to the node's computing units / units per task), all forked from one forkserver.

Time limits, per chunk (``limit`` and ``load`` come from the master with the task, see
:mod:`compss_infer.engines.timelimit`): a chunk given to a worker that has the model loaded may run
``limit`` seconds; a chunk that waits for a worker to start gets ``load + limit`` from its arrival;
a worker that has not loaded the model within ``load`` seconds of its start is killed (a stalled
forkserver is killed with it, so the next start is a fresh one).  Past its limit the chunk's worker
is killed and the chunk comes back as ``Timeout``, never as a model error.  A chunk whose client
goes away (the executor died, or the runtime's alarm or cancel interrupted it) has its worker killed.

The only file of ours, the forkserver's socket, lives in ``<tmp>/compss-infer-node-<pid>``, removed
when the server ends; a server that was SIGKILLed leaves its folder, which the next server on the
node removes.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing import connection
from typing import Any

from ..core.contracts import TaskError, WorkerSpec
from .base import describe_exit, failure_text
from .local import _worker_main, forkserver_preload
from .nodeclient import alive, peer

log = logging.getLogger("compss_infer")
FOLDER_PREFIX = "compss-infer-node-"
ORPHAN_S = 30.0  # a server nobody connected to within this ends (its starter died first)
LOAD_CRASHES = 3  # workers dying while loading, in a row, before the chunk counts as a model failure
TICK = 0.5
MODEL_FAILURES = ("ModelError", "ConfigError")  # a chunk failing with these failed on loading the model


@dataclass
class _Job:
    """One chunk from one client connection."""

    conn: Any
    spec: WorkerSpec
    paths: list[str]
    limit: float  # 0: no limit
    load: float
    received: float
    deadline: float | None
    worker: "_Worker | None" = None
    sent: float | None = None  # when it went to a worker with the model loaded


@dataclass
class _Worker:
    """One worker process: ``spawning`` (the forkserver was asked), ``starting`` (loading), ``ready``."""

    number: int
    proc: Any
    conn: Any
    child_conn: Any
    born: float
    allowance: float  # seconds it may take to load (0: no limit)
    state: str = "spawning"
    job: _Job | None = None
    killed: bool = False
    spawn_error: BaseException | None = None


class _Spawner(threading.Thread):
    """Starts workers through the forkserver, one at a time, for the whole life of the server.

    Asking the forkserver for a worker blocks until the forkserver has imported its modules, so it
    happens here, not in the loop that keeps every other wait bounded.  This thread also (re)starts
    the forkserver (``ensure_running``), so the forkserver's parent thread, whose end would fire its
    parent-death signal, lives as long as the server.
    """

    def __init__(self, wake: int):
        super().__init__(daemon=True, name="compss-infer-spawner")
        self.requests: queue.Queue[_Worker | None] = queue.Queue()
        self.done: queue.Queue[_Worker] = queue.Queue()
        self._wake = wake

    def run(self) -> None:
        while True:
            w = self.requests.get()
            if w is None:
                return
            for attempt in range(3):
                if w.killed:
                    break
                try:
                    w.proc.start()
                    w.spawn_error = None
                    break
                except (ConnectionRefusedError, FileNotFoundError) as exc:  # the forkserver died just now
                    w.spawn_error = exc
                    time.sleep(0.2)
                except BaseException as exc:  # noqa: BLE001 - a stalled forkserver killed under us, ...
                    w.spawn_error = exc
                    break
            self.done.put(w)
            os.write(self._wake, b"w")


class Server:
    """The loop: clients' chunks in, workers' answers out, every wait bounded."""

    def __init__(self, config: dict[str, Any], listener: socket.socket, folder: str):
        self.gpu: str | None = config.get("gpu")
        self.max_workers = max(1, int(config.get("max_workers") or 1))
        self.listener = listener
        self.folder = folder
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(forkserver_preload(config.get("preload")))
        self.jobs: list[_Job] = []
        self.pending: dict[Any, tuple[int, float]] = {}  # accepted connections whose request is still to come
        self.workers: list[_Worker] = []
        self.leases: dict[int, int | None] = {}  # client pid -> its pidfd (None: polled instead)
        self.had_client = False
        self.started = time.monotonic()
        self.stopping = False
        self.load_crashes = 0
        self.spawned = 0
        self.host = socket.gethostname()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self.spawner = _Spawner(self._wake_w)
        self.spawner.start()

    # ------------------------------------------------------------------ the loop
    def serve(self) -> None:
        while not self._finished():
            self._step()

    def _finished(self) -> bool:
        if self.stopping:
            return True
        if self.jobs or self.leases or self.pending:
            return False
        return self.had_client or time.monotonic() - self.started > ORPHAN_S

    def _step(self) -> None:
        now = time.monotonic()
        deadlines = [j.deadline for j in self.jobs if j.deadline is not None]
        deadlines += [w.born + w.allowance for w in self.workers if w.state in ("spawning", "starting") and w.allowance]
        timeout = max(0.0, min([TICK] + [d - now for d in deadlines]))
        live = [w for w in self.workers if w.state in ("starting", "ready") and not w.killed]
        waitables: list[Any] = [self.listener, self._wake_r, *self.pending] + [j.conn for j in self.jobs]
        waitables += [w.conn for w in live] + [w.proc.sentinel for w in self.workers if w.state != "spawning"]
        waitables += [fd for fd in self.leases.values() if fd is not None]
        ready = set(connection.wait(waitables, timeout))
        for job in [j for j in self.jobs if j.conn in ready]:  # a client says nothing after its request: gone
            self._cancel(job)
        if self.listener in ready:
            self._accept()
        if self._wake_r in ready:
            self._spawned()
        for conn in list(self.pending):
            if conn in ready:
                self._request(conn, self.pending.pop(conn)[0])
            elif now - self.pending[conn][1] > 5.0:  # connected and said nothing: dropped
                del self.pending[conn]
                conn.close()
        for w in list(self.workers):
            if w.state != "spawning" and w.conn in ready:
                self._receive(w)
            if w in self.workers and w.state != "spawning" and w.proc.sentinel in ready:
                self._reap(w)
        self._check_leases(ready)
        self._check_deadlines()
        self._balance()

    # ------------------------------------------------------------------ clients
    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        pid, uid = peer(sock)
        if uid != os.getuid():  # never unpickle what another user sends
            sock.close()
            return
        self.had_client = True
        if pid not in self.leases:
            self.leases[pid] = _pidfd(pid)
        self.pending[connection.Connection(sock.detach())] = (pid, time.monotonic())

    def _request(self, conn: Any, pid: int) -> None:
        """A client's message: a chunk to run, or the release of its lease."""
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            conn.close()
            return
        if msg[0] == "release":
            fd = self.leases.pop(pid, None)
            if fd is not None:
                os.close(fd)
            conn.close()
            return
        _, spec, paths, limit, load = msg
        now = time.monotonic()
        self.jobs.append(_Job(conn, spec, paths, limit, load, now, now + load + limit if limit else None))

    def _cancel(self, job: _Job) -> None:
        """The client went away (its executor died, or its wait was interrupted): drop the chunk."""
        if job.worker is not None and job.sent is not None:
            self._kill(job.worker)
        self._finish(job, None)

    def _check_leases(self, ready: set) -> None:
        for pid, fd in list(self.leases.items()):
            gone = (fd in ready) if fd is not None else not alive(pid)
            if gone:
                del self.leases[pid]
                if fd is not None:
                    os.close(fd)

    def _finish(self, job: _Job, answer: Any) -> None:
        """Send ``answer`` (None: nothing, the client is gone) and forget the chunk."""
        if answer is not None:
            try:
                job.conn.send(answer)
            except (OSError, ValueError):
                pass
        job.conn.close()
        if job in self.jobs:
            self.jobs.remove(job)
        if job.worker is not None and job.worker.job is job:
            job.worker.job = None
        job.worker = None

    # ------------------------------------------------------------------ workers
    def _balance(self) -> None:
        """Give waiting chunks to idle workers; start workers for those still waiting."""
        from ..worker import classify_chunk
        waiting = [j for j in self.jobs if j.worker is None]
        idle = [w for w in self.workers if w.state == "ready" and w.job is None and not w.killed]
        for job, w in zip(waiting, idle):
            if not _send(w.conn, (0, classify_chunk, (job.spec, job.paths))):
                continue  # the worker is dying; its sentinel will tell
            job.worker, w.job = w, job
            job.sent = time.monotonic()
            if job.limit:
                job.deadline = job.sent + job.limit  # the model is loaded: the limit is the chunk's own
        waiting = [j for j in self.jobs if j.worker is None]
        starting = [w for w in self.workers if w.state in ("spawning", "starting") and not w.killed]
        for job in waiting[len(starting):]:
            if len(self.workers) >= self.max_workers:
                break
            self._spawn(job)

    def _spawn(self, job: _Job) -> None:
        from ..worker import warm_up
        parent, child = self.ctx.Pipe(duplex=True)
        self.spawned += 1
        proc = self.ctx.Process(target=_worker_main, args=(child, warm_up, job.spec, self.gpu), daemon=True,
                                name=f"compss-infer-node-worker-{self.spawned}")
        w = _Worker(self.spawned, proc, parent, child, time.monotonic(), job.load)
        self.workers.append(w)
        self.spawner.requests.put(w)

    def _spawned(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        while True:
            try:
                w = self.spawner.done.get_nowait()
            except queue.Empty:
                return
            w.child_conn.close()
            if w.spawn_error is not None or w.proc.pid is None:
                self._drop(w)
                self._load_failed(f"could not start a worker process: {failure_text(w.spawn_error or OSError())}",
                                  crashed=not w.killed)
            elif w.killed:
                self._kill(w)
                w.state = "starting"  # reaped through its sentinel
            else:
                w.state = "starting"

    def _receive(self, w: _Worker) -> None:
        while w in self.workers:
            try:
                if not w.conn.poll():
                    return
                msg = w.conn.recv()
            except (EOFError, OSError):
                return  # its sentinel says the rest
            if msg[0] == "init":
                if msg[1]:
                    w.state = "ready"
                    self.load_crashes = 0
                else:  # a model error: the same for every chunk waiting for a worker
                    w.killed = True  # it exits by itself
                    text = failure_text(msg[2])
                    for job in [j for j in self.jobs if j.worker is None]:
                        self._finish(job, TaskError(text, setup=True, host=self.host))
            else:
                _, _, ok, value = msg
                job = w.job
                if job is not None:  # a chunk that failed on the model (not on an image) is the model's failure
                    setup = not ok and value.split(":", 1)[0] in MODEL_FAILURES
                    self._finish(job, value if ok else TaskError(value, setup=setup, host=self.host))

    def _reap(self, w: _Worker) -> None:
        """A worker is gone: its chunk failed (it crashed), or it died loading, or it was killed."""
        w.proc.join(1.0)
        was = w.state
        self._drop(w)
        what = f"worker process {w.proc.pid} {describe_exit(w.proc.exitcode)}"
        forkserver = _forkserver_pid()
        if w.proc.exitcode == 255 and forkserver and _dies(forkserver):  # only the forkserver knew how it ended
            what = f"worker process {w.proc.pid} ended with its forkserver (process {forkserver}), which died"
        if w.job is not None and not w.killed:
            self._finish(w.job, TaskError(f"WorkerCrashed: {what}", host=self.host))
        elif was == "starting" and not w.killed:
            self._load_failed(f"{what} while loading the model", crashed=True)

    def _load_failed(self, text: str, crashed: bool) -> None:
        """A worker did not come up: the oldest waiting chunk fails; repeated crashes are a model failure."""
        if crashed:
            self.load_crashes += 1
        waiting = [j for j in self.jobs if j.worker is None]
        if waiting and crashed:
            setup = self.load_crashes >= LOAD_CRASHES
            note = f" ({self.load_crashes} in a row)" if setup else ""
            self._finish(waiting[0], TaskError(f"WorkerCrashed: {text}{note}", setup=setup, host=self.host))

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for w in list(self.workers):
            if w.state in ("spawning", "starting") and w.allowance and now >= w.born + w.allowance and not w.killed:
                log.warning("worker %d had not loaded the model after %gs: killed", w.number, w.allowance)
                if w.state == "spawning":
                    _kill_forkserver()  # it never forked the worker: stalled while importing
                self._kill(w)
        for job in list(self.jobs):
            if job.deadline is None or now < job.deadline:
                continue
            allowed = job.deadline - (job.sent if job.sent is not None else job.received)
            if job.sent is not None and job.worker is not None:
                what, after = "classifying", "its worker process was killed"
                self._kill(job.worker)
            else:
                what, after = "while loading the model", "no worker process had the model loaded in time"
            self._finish(job, TaskError(f"Timeout: the chunk ran past its time limit of {allowed:.0f}s ({what}; "
                                        f"{after})", host=self.host))

    def _kill(self, w: _Worker) -> None:
        w.killed = True
        if w.proc.pid is not None:
            try:
                os.kill(w.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _drop(self, w: _Worker) -> None:
        if w in self.workers:
            self.workers.remove(w)
        for end in (w.conn, w.child_conn):
            end.close()

    # ------------------------------------------------------------------ the end
    def shutdown(self) -> None:
        self.listener.close()  # a client connecting now is refused (and starts a new server), not left waiting
        for job in list(self.jobs):
            self._finish(job, None)
        for w in self.workers:
            self._kill(w)
        _kill_forkserver()
        self.spawner.requests.put(None)
        shutil.rmtree(self.folder, ignore_errors=True)


def _send(conn: Any, msg: Any) -> bool:
    try:
        conn.send(msg)
        return True
    except (OSError, ValueError):
        return False


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` ends (None: no pidfd here; polled instead)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _dies(pid: int, within: float = 0.5) -> bool:
    """Whether ``pid`` is dead or dies within a moment (a process closes its pipes before it is dead)."""
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _forkserver_pid() -> int | None:
    from multiprocessing import forkserver
    return getattr(forkserver._forkserver, "_forkserver_pid", None)


def _kill_forkserver() -> None:
    pid = _forkserver_pid()
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _sweep(base: str) -> None:
    """Remove the folders of servers of ours that died without cleaning up (SIGKILL)."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        pid = name[len(FOLDER_PREFIX):]
        path = os.path.join(base, name)
        if name.startswith(FOLDER_PREFIX) and pid.isdigit() and not alive(int(pid)):
            try:
                if os.lstat(path).st_uid == os.getuid():
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass


def _folder() -> str:
    """Our private folder, after sweeping those of dead servers.  A Unix socket path holds at most
    107 bytes, and the forkserver's socket (``listener-XXXXXXXX``) goes in here: a long temporary
    folder is swapped for /tmp."""
    base = tempfile.gettempdir()
    if len(os.path.join(base, f"{FOLDER_PREFIX}{os.getpid()}", "listener-xxxxxxxx")) > 100:
        base = "/tmp"
    _sweep(base)
    folder = os.path.join(base, f"{FOLDER_PREFIX}{os.getpid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder


def _detach() -> None:
    """Leave the executor that started us: fork, the parent prints the server's pid and exits."""
    pid = os.fork()
    if pid:
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
        os._exit(0)
    os.setsid()  # not in the executor's process group or session: its signals are not ours
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # the starter reads our pid until EOF
    os.close(devnull)


def main(argv: list[str]) -> int:
    config = json.loads(argv[0])
    _detach()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # the executor that started us may be pinned to its first task's CPUs: serve the whole node
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    except (AttributeError, OSError, ValueError):
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(config["address"])
    except OSError:  # another executor's server won the race: the clients use that one
        return 0
    listener.listen(64)
    folder = _folder()
    multiprocessing.process.current_process()._config["tempdir"] = folder  # the forkserver's socket goes here
    server = Server(config, listener, folder)

    def stop(*_: Any) -> None:
        server.stopping = True
    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve()
    except BaseException:  # noqa: BLE001 - a bug here: say what it was (stderr: the starting task's job log)
        import traceback
        traceback.print_exc()
    finally:
        server.shutdown()
        sys.stderr.flush()
    os._exit(0)  # the spawner may still wait on a killed forkserver; nothing left to clean


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
