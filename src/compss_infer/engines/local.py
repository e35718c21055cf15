"""The embedded default engine: a pool of worker processes on this node.

Why not multiprocessing.Pool / ProcessPoolExecutor: one dies for good when a worker is killed
(BrokenProcessPool), the other hangs.  Here each worker has its own pipe; the master waits on the
pipes and the process sentinels together, so a worker that dies (segfault, OOM kill, SIGKILL) or
runs past its time limit (``run.task_timeout``, by default the ``auto`` rule of
:mod:`compss_infer.engines.timelimit`) is noticed at once, its task is reported failed, and a replacement is
started.  Workers start with ``forkserver`` (TensorFlow imported once in the server, so a new
worker is ready in a fraction of a second and pages are shared) or ``spawn``; never plain fork,
which hangs once the parent has used TensorFlow.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing import connection
from typing import Any, Callable

from ..core.errors import CompssInferError, RunAborted
from .timelimit import ChunkClock, TimeLimitPolicy
from .base import Outcome, describe_exit, failure_text, portable_error
from .lifeline import die_with_parent

log = logging.getLogger("compss_infer")


def _send(conn: Any, msg: Any) -> bool:
    try:
        conn.send(msg)
        return True
    except (BrokenPipeError, EOFError, OSError):
        return False
    except Exception as exc:  # unpicklable result: report it instead of dying
        if isinstance(msg, tuple) and msg and msg[0] == "done":
            return _send(conn, ("done", msg[1], False, f"ResultError: cannot send the result back: {failure_text(exc)}"))
        raise


def _worker_main(conn: Any, init: Callable[[Any], Any], init_arg: Any, gpu: str | None = None) -> None:
    """A worker process: run ``init`` once, then tasks until told to stop or the master is gone.

    ``gpu``: the one GPU this worker may use.  CUDA reads CUDA_VISIBLE_DEVICES when it first
    initialises, which TensorFlow does lazily (not at import), so setting it here still counts.
    """
    die_with_parent()  # a SIGKILLed parent (the forkserver, or the master under spawn) takes us along
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master decides what Ctrl-C means
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # started blocked: now ignored instead
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    try:
        value = init(init_arg)
    except BaseException as exc:  # noqa: BLE001 - every start-up failure must reach the master
        _send(conn, ("init", False, portable_error(exc)))
        return
    if not _send(conn, ("init", True, value)):
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # master gone
        if msg is None:
            return
        key, fn, args = msg
        try:
            reply = ("done", key, True, fn(*args))
        except Exception as exc:  # noqa: BLE001 - a failing task is an outcome, not a crash
            reply = ("done", key, False, failure_text(exc))
        if not _send(conn, reply):
            return


@dataclass
class _Worker:
    number: int
    slot: int  # a replacement takes its predecessor's slot (and GPU)
    proc: Any
    conn: Any
    state: str = "starting"  # starting | ready | failed
    task: tuple[Any, Callable[..., Any], tuple[Any, ...]] | None = None
    task_started: float = 0.0
    task_limit: float | None = None  # seconds this task may run (None: no limit)
    born: float = field(default_factory=time.monotonic)


PRELOAD = ["compss_infer.model.backends.tf_preload"]  # the default: TensorFlow (callers pass the model's own list)
GUARD = "compss_infer.engines._forkserver_guard"  # first in every forkserver: it dies with its parent


def forkserver_preload(preload: list[str] | None = None) -> list[str]:
    """What a forkserver of ours imports: the guard, then ``preload`` (by default TensorFlow)."""
    return [GUARD] + [m for m in (preload or PRELOAD) if m != GUARD]


class _ChildrenStartWithSigintBlocked:
    """Processes started inside begin life with SIGINT blocked (the mask survives fork and exec), so a
    Ctrl-C while the forkserver imports TensorFlow is the master's alone to report: each of them ignores
    SIGINT once running (multiprocessing's forkserver and resource tracker, ``_worker_main``), which
    also discards a Ctrl-C that came meanwhile.  CPython's resource tracker starts the same way (bpo-33613).

    Only this thread's mask changes, never the process-wide disposition: with SIGINT ignored even
    for a moment, a Ctrl-C the kernel hands to another thread of the master (the planner, a BLAS
    pool) was dropped and the run went on.  Now such a Ctrl-C reaches the master's handler at once,
    and one aimed at this thread waits, pending, until the block ends.
    """

    def __enter__(self) -> None:
        from multiprocessing import resource_tracker
        # Started now, before the block: starting it unblocks SIGINT in this thread when it is done
        # (CPython's own bpo-33613 dance), which would undo ours for the processes started after it.
        resource_tracker.ensure_running()
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def __exit__(self, *exc: Any) -> None:
        if signal.SIGINT not in self._mask:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def prestart(start_method: str, preload: list[str] | None = None) -> None:
    """Start the forkserver (which imports ``preload``, by default TensorFlow) now, before the
    master's own imports.

    Non-blocking: the server preloads in the background and workers fork from it when asked.
    """
    if start_method != "forkserver":
        return
    import multiprocessing
    from multiprocessing import forkserver
    multiprocessing.get_context("forkserver").set_forkserver_preload(forkserver_preload(preload))
    with _ChildrenStartWithSigintBlocked():
        forkserver.ensure_running()


class LocalEngine:
    """N worker processes, one task each at a time, replaced when they die or hang."""

    name = "local"

    def __init__(self, workers: int, start_method: str = "forkserver",
                 task_timeout: TimeLimitPolicy | float | str | None = None,
                 max_startup_failures: int = 3, gpus: list[str] | None = None,
                 preload: list[str] | None = None, **_: Any):
        import multiprocessing
        self.workers = max(1, workers)
        self.gpus = gpus or []  # worker slot i uses GPU gpus[i % len(gpus)]
        self.clock = ChunkClock(TimeLimitPolicy.from_setting(task_timeout))
        self.max_startup_failures = max_startup_failures
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(forkserver_preload(preload))
        self._pool: list[_Worker] = []
        self._queue: list[tuple[Any, Callable[..., Any], tuple[Any, ...]]] = []
        self._init: tuple[Callable[[Any], Any], Any] | None = None
        self._init_value: Any = None
        self._init_done = False
        self._init_error: BaseException | None = None
        self._startup_failures = 0
        self._spawned = 0
        self._closing = False
        self.replaced = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self, init: Callable[[Any], Any], init_arg: Any) -> None:
        self._init = (init, init_arg)
        for slot in range(self.workers):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        assert self._init is not None
        parent, child = self._ctx.Pipe(duplex=True)
        self._spawned += 1
        gpu = self.gpus[slot % len(self.gpus)] if self.gpus else None
        proc = self._ctx.Process(target=_worker_main, args=(child, *self._init, gpu), daemon=True,
                                 name=f"compss-infer-worker-{self._spawned}")
        with _ChildrenStartWithSigintBlocked():  # only while the processes are created: start() may wait
            if self._ctx.get_start_method() == "forkserver":
                from multiprocessing import forkserver
                forkserver.ensure_running()
            else:
                proc.start()
        if self._ctx.get_start_method() == "forkserver":
            proc.start()  # waits until the server has TensorFlow loaded; Ctrl-C works meanwhile
        child.close()
        self._pool.append(_Worker(number=self._spawned, slot=slot, proc=proc, conn=parent))

    def close(self, abort: bool = False) -> None:
        self._closing = True
        for w in self._pool:
            if abort:
                self._kill(w)
            else:
                _send(w.conn, None)
        deadline = time.monotonic() + (1.0 if abort else 10.0)
        for w in self._pool:
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                self._kill(w)
                w.proc.join(2.0)
            w.conn.close()
        self._pool.clear()
        self._queue.clear()

    @staticmethod
    def _kill(w: _Worker) -> None:
        try:
            if w.proc.pid is not None:
                os.kill(w.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    # ------------------------------------------------------------------ contract
    def preflight(self) -> Any:
        """The first worker's model-load answer; an error any worker hits is raised at once."""
        while not self._init_done:
            if self._init_error is not None:
                raise self._init_error
            self._pump(0.5, [])
        return self._init_value

    def slots(self) -> int:
        return self.workers

    def startup_error(self) -> BaseException | None:
        """Why workers cannot start (a model error, or repeated crashes), once known; else None."""
        return self._init_error

    def ready(self) -> bool:
        """Whether a worker has loaded the model."""
        return self._init_done

    def submit(self, key: Any, fn: Callable[..., Any], *args: Any) -> None:
        self._queue.append((key, fn, args))
        self._dispatch()

    def poll(self, timeout: float) -> list[Outcome]:
        outcomes: list[Outcome] = []
        deadline = time.monotonic() + timeout
        while True:
            self._pump(max(0.0, deadline - time.monotonic()), outcomes)
            if outcomes or time.monotonic() >= deadline:
                return outcomes

    # ------------------------------------------------------------------ internals
    def _dispatch(self) -> None:
        for w in self._pool:
            if not self._queue:
                return
            if w.state == "ready" and w.task is None:
                task = self._queue.pop(0)
                if _send(w.conn, task):
                    w.task = task
                    w.task_started = time.monotonic()
                    w.task_limit = self.clock.limit(_size(task[2]))
                else:
                    self._queue.insert(0, task)  # the worker is dying; its sentinel will tell

    def _pump(self, timeout: float, outcomes: list[Outcome]) -> None:
        """Wait for one event (message, death, timeout) at most ``timeout`` seconds; handle all ready."""
        self._dispatch()
        now = time.monotonic()
        deadlines = [d for d in map(self._deadline, self._pool) if d is not None]
        if deadlines:
            timeout = min(timeout, max(0.0, min(deadlines) - now))
        waitables = [w.conn for w in self._pool] + [w.proc.sentinel for w in self._pool]
        ready = set(connection.wait(waitables, timeout=timeout)) if waitables else set()
        if not waitables and timeout:
            time.sleep(min(timeout, 0.1))
        for w in list(self._pool):
            if w.conn in ready:
                self._receive(w, outcomes)
            if w in self._pool and w.proc.sentinel in ready:
                self._reap(w, outcomes)
        self._check_timeouts(outcomes)
        self._dispatch()

    def _receive(self, w: _Worker, outcomes: list[Outcome]) -> None:
        while w in self._pool:
            try:
                if not w.conn.poll():
                    return
                msg = w.conn.recv()
            except (EOFError, OSError):
                self._reap(w, outcomes)
                return
            if msg[0] == "init":
                ok, value = msg[1], msg[2]
                if ok:
                    w.state = "ready"
                    self._startup_failures = 0
                    if not self._init_done:
                        self._init_done, self._init_value = True, value
                else:
                    w.state = "failed"  # the process exits by itself; its sentinel reaps it
                    deterministic = isinstance(value, CompssInferError) and not self._init_done
                    self._startup_failed(failure_text(value), value if deterministic else None)
            else:
                _, key, ok, value = msg
                w.task = None
                if ok:
                    self.clock.record_result(value)
                outcomes.append(Outcome(key, value=value) if ok else Outcome(key, failure=value))

    def _reap(self, w: _Worker, outcomes: list[Outcome], kind: str = "WorkerCrashed",
              why: str | None = None) -> None:
        """A worker is gone: fail its task, replace it."""
        if w not in self._pool:
            return
        w.proc.join(1.0)
        self._pool.remove(w)
        w.conn.close()
        what = why or f"worker process {w.proc.pid} {describe_exit(w.proc.exitcode)}"
        if w.task is not None:
            outcomes.append(Outcome(w.task[0], failure=f"{kind}: {what}"))
            log.warning("%s; the task will be retried", what)
        elif w.state == "starting":
            self._startup_failed(f"{what} while loading the model")
        if not self._closing and self._init_error is None:
            self.replaced += 1
            self._spawn(w.slot)

    def _startup_failed(self, text: str, error: BaseException | None = None) -> None:
        """Count consecutive start-up failures; give up when they repeat (or are certain to)."""
        self._startup_failures += 1
        if error is not None:  # the same for every worker: preflight raises it, once
            self._init_error = error
            return
        log.warning("a worker failed to start: %s", text)
        if self._startup_failures >= self.max_startup_failures:
            abort = RunAborted(f"worker processes keep failing to start ({self._startup_failures} in a row): {text}")
            if not self._init_done:
                self._init_error = abort
            else:
                raise abort

    def _deadline(self, w: _Worker) -> float | None:
        """When ``w`` is past its time: its task's limit, or (auto) the model-loading allowance."""
        if w.task is not None and w.task_limit is not None:
            return w.task_started + w.task_limit
        if w.state == "starting" and self.clock.policy.load_allowance:
            return w.born + self.clock.policy.load_allowance
        return None

    def running(self) -> list[tuple[Any, str, float, float | None]]:
        """(key, worker, seconds running, limit) of every running task: what a stalled run waits on."""
        now = time.monotonic()
        return [(w.task[0], f"worker process {w.proc.pid}", now - w.task_started, w.task_limit)
                for w in self._pool if w.task is not None]

    def _check_timeouts(self, outcomes: list[Outcome]) -> None:
        now = time.monotonic()
        for w in list(self._pool):
            deadline = self._deadline(w)
            if deadline is None or now <= deadline:
                continue
            self._kill(w)
            if w.task is None:  # still loading the model: a start-up failure, counted as such
                self._reap(w, outcomes, why=f"worker process {w.proc.pid} was still loading the model after "
                                            f"{self.clock.policy.load_allowance:g}s (killed)")
                continue
            p = self.clock.policy
            what = (f"run.task_timeout={p.fixed:g}s" if not p.auto else
                    f"its time limit of {w.task_limit:.0f}s ({p.describe()})")
            self._reap(w, outcomes, kind="Timeout",
                       why=f"task ran past {what} (worker process {w.proc.pid} killed)")


def _size(args: tuple[Any, ...]) -> int:
    """Images in a task: the length of its last argument (``classify_chunk(spec, paths)``), else 1."""
    try:
        return max(1, len(args[-1])) if args else 1
    except TypeError:
        return 1
