"""The ``compss`` engine: chunks run as PyCOMPSs tasks, gathered in order with ``compss_wait_on``.

PyCOMPSs has no wait-any, so the master keeps the scheduler's bounded window of submitted chunks
and waits on the oldest one first: results come back in submission order, memory stays flat, and
progress moves as chunks finish.  A chunk that failed (``compss_wait_on`` gives None under
``on_failure="IGNORE"``, or the task returned a :class:`~.compss_tasks.TaskError`) is reported as
a failure, and the scheduler retries and splits it down to single images.

A chunk whose task could not load the model (a ``TaskError`` with ``setup``) aborts the run only
when that is consistent: when a second node fails the same way, or the same node fails again after
a pause (``setup_pause``, 10 s).  Until then the chunk is retried whole after the pause: a model file
that could not be read for a second, or a GPU briefly out of memory, costs a retry, not the run.  A
success from a node forgets its failures.

Each chunk carries its time limit (``run.task_timeout``, by default the ``auto`` rule of
:mod:`compss_infer.engines.timelimit`, fed by the chunks that finished): the node server kills the
chunk's worker past it, so a hung chunk holds the ordered gather for at most its limit (plus the
loading allowance when its worker must load the model first, and a few seconds' grace: see
:mod:`.nodeclient`).

``$COMPSS_INFER_CU`` is read by the COMPSs master JVM from its own environment at start-up, so
the engine cannot set it: the launch scripts export it, and the engine refuses to start (exit 2)
when it is missing or disagrees with ``session.intra_op_threads``.

The master never imports TensorFlow: the model is checked (``preflight``) in a short-lived spawned
process on the master node.  ``pycompss`` is imported here only, when the engine starts.
"""
from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import time
from collections import deque
from dataclasses import replace
from multiprocessing import connection
from typing import Any, Callable

from ..core.contracts import ChunkResult, ModelInfo, WorkerSpec
from ..core.errors import ConfigError, RunAborted
from .compss_env import CU_ENV, TIME_OUT_ENV, computing_units, task_time_out
from .timelimit import ChunkClock, TimeLimitPolicy
from .base import Outcome, portable_error
from .lifeline import die_with_parent

log = logging.getLogger("compss_infer")
TASKS_MODULE = "compss_infer.engines.compss_tasks"
SETUP_PAUSE_S = 10.0  # a node's model failure counts as consistent when it repeats this much later
NONE_TEXT = ("TaskFailed: the COMPSs task failed (compss_wait_on gave None: its executor died, it ran past "
             "time_out, or it raised; see the COMPSs job logs)")


def _preflight_main(conn: Any, init: Callable[[Any], Any], arg: Any) -> None:
    """The short-lived model check: load the model once, send back its ModelInfo or the error."""
    die_with_parent()  # a master killed meanwhile takes its check along
    try:
        conn.send(("ok", init(arg)))
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the master
        conn.send(("error", portable_error(exc)))


class CompssEngine:
    """Submit chunk tasks to COMPSs; ``poll`` waits on the oldest one (ordered streaming gather)."""

    name = "compss"

    def __init__(self, workers: int | None = 1, task_timeout: TimeLimitPolicy | float | str | None = "auto",
                 stage_model: bool = False, device: str = "cpu", stage_shards: bool = False, **_: Any):
        self.workers = max(1, workers or 1)
        self.clock = ChunkClock(TimeLimitPolicy.from_setting(task_timeout))
        self.stage_model = stage_model
        self.stage_shards = stage_shards  # a task's tar shard travels as one FILE_IN (no shared file system)
        self.device = device
        self.replaced = 0  # executors are COMPSs's business; kept for the run summary
        self._futures: deque[tuple[Any, Any, float, float | None]] = deque()  # key, future, submitted, limit
        self._task: Callable[..., Any] | None = None
        self._wait_on: Callable[[Any], Any] | None = None
        self._model_path = ""
        self._check: tuple[Any, Any] | None = None  # (process, connection) of the model check
        self._warned = False
        self._task_error: type = type(None)
        self.setup_pause = SETUP_PAUSE_S
        self._setup_failures: dict[str, tuple[float, str]] = {}  # node -> (first time, text), until it succeeds

    # ------------------------------------------------------------------ lifecycle
    def start(self, init: Callable[[Any], Any], init_arg: Any) -> None:
        """Fix the task environment, import the task module, and start the model check."""
        spec: WorkerSpec = init_arg
        if not os.path.isabs(spec.model.path):
            raise ConfigError(f"model.path must be absolute for COMPSs tasks (they run in a sandbox): {spec.model.path}")
        self._model_path = spec.model.path
        try:
            from pycompss.api.api import compss_wait_on
            self._prepare_environment(spec)
            tasks = importlib.import_module(TASKS_MODULE)
        except ImportError as exc:
            raise ConfigError(f"run.engine=compss needs PyCOMPSs ({exc}); run it with scripts/launch_runcompss.sh "
                              f"or scripts/submit_slurm.sh on a machine with COMPSs, or use --engine local") from None
        if tasks.TIME_OUT != int(os.environ[TIME_OUT_ENV] or 0):
            raise ConfigError(f"the COMPSs tasks were already decorated with time_out={tasks.TIME_OUT}s in this "
                              f"process; run.task_timeout cannot change within one process")
        self._wait_on = compss_wait_on
        self._task = tasks.choose(self.device, self.stage_model)
        self._tasks = tasks
        self._task_error = tasks.TaskError
        if self.device == "gpu" and (spec.session.intra_op_threads or 1) > 1:
            log.warning("the GPU task reserves one CPU computing unit but session.intra_op_threads=%d",
                        spec.session.intra_op_threads)
        self._start_check(init, spec)

    def _prepare_environment(self, spec: WorkerSpec) -> None:
        """Check ``$COMPSS_INFER_CU`` (the JVM's, fixed before the app ran); export the time_out the tasks read."""
        scripts = "scripts/launch_runcompss.sh or scripts/submit_slurm.sh (compss-infer submit)"
        if not os.environ.get(CU_ENV):
            raise ConfigError(f"{CU_ENV} is not set: COMPSs reads it from the environment runcompss started with, "
                              f"so export it before runcompss (the launch scripts do: {scripts})")
        try:
            computing_units(spec.session)
        except ConfigError as exc:
            raise ConfigError(f"{exc.one_line().split(': ', 1)[-1]}; start through {scripts}") from None
        os.environ[TIME_OUT_ENV] = str(task_time_out(self._setting(), floor=self.clock.policy.floor))

    def _setting(self) -> float | str | None:
        p = self.clock.policy
        return "auto" if p.auto else p.fixed

    def _start_check(self, init: Callable[[Any], Any], spec: WorkerSpec) -> None:
        # A GPU is the workers' business: the master node checks the model on its CPU.
        check_spec = replace(spec, session=replace(spec.session, device="cpu")) if self.device == "gpu" else spec
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_preflight_main, args=(child, init, check_spec), daemon=True,
                           name="compss-infer-model-check")
        proc.start()
        child.close()
        self._check = (proc, parent)

    def preflight(self) -> ModelInfo:
        """The model check's answer (its error is raised here, before any task is submitted)."""
        assert self._check is not None, "start() first"
        proc, conn = self._check
        connection.wait([conn, proc.sentinel])
        try:
            kind, value = conn.recv()
        except (EOFError, OSError):
            proc.join(5)
            raise RunAborted(f"the model check process died (exit code {proc.exitcode}) while loading "
                             f"{self._model_path}") from None
        finally:
            conn.close()
        proc.join(10)
        self._check = None
        if kind == "error":
            raise value
        if self.device == "gpu":
            value = replace(value, device="gpu (COMPSs tasks; checked on the master's CPU)")
        return value

    def slots(self) -> int:
        """Tasks COMPSs can run at once (run.workers; the submit command passes the allocation's)."""
        return self.workers

    def close(self, abort: bool = False) -> None:
        """Forget outstanding futures (COMPSs finishes them; the app's end stops the runtime)."""
        if self._check is not None:
            proc, conn = self._check
            if proc.is_alive():
                proc.kill()
            proc.join(5)
            conn.close()
            self._check = None
        if self._futures and not abort:
            log.warning("%d COMPSs tasks were never waited on", len(self._futures))
        self._futures.clear()
        from .nodeclient import release
        release()  # tasks run in this process (no runtime) took leases on servers: let them end

    # ------------------------------------------------------------------ tasks
    def submit(self, key: Any, fn: Callable[..., Any], *args: Any) -> None:
        """Submit ``classify_chunk(spec, paths)`` as a COMPSs task (the only function it runs)."""
        from ..images.shards import SHARD_REFS, ShardSlice, index_shard
        from ..worker import classify_chunk
        assert self._task is not None, "start() first"
        if fn is index_shard:  # a tar shard's index: no model, the shard staged when asked
            task = self._tasks.index_task_staged if self.stage_shards else self._tasks.index_task
            self._futures.append((key, task(*args), time.monotonic(), None))
            return
        if fn is not classify_chunk or len(args) != 2:
            raise ValueError("the compss engine runs compss_infer.worker.classify_chunk(spec, paths) only")
        spec, paths = args
        shard = paths.path if isinstance(paths, ShardSlice) else None
        if isinstance(paths, SHARD_REFS):  # a shard slice (or several): the shards' paths
            names = [shard] if shard else [p.path for p in paths.parts]
        else:
            names = paths
        relative = next((p for p in names if not os.path.isabs(p)), None)
        if relative is not None:
            raise ValueError(f"COMPSs tasks run in a sandbox: image paths must be absolute, got {relative!r}")
        policy = self.clock.policy
        limit = self.clock.limit(len(paths))
        load = policy.load_allowance
        if isinstance(paths, SHARD_REFS) and self.stage_shards:  # one FILE_IN per shard (and the model), never per image
            if shard is None:
                raise ValueError("with run.stage_shards a COMPSs task gets one shard's slice, not several")
            future = self._tasks.choose_shard_staged(self.device)(spec, paths, shard, self._model_path,
                                                                  limit or 0, load)
            self._futures.append((key, future, time.monotonic(), limit))
            return
        task_args = (spec, paths if isinstance(paths, SHARD_REFS) else list(paths)) + \
            ((self._model_path,) if self.stage_model else ()) + \
            (limit or 0, load)
        # Under runcompss: a future.  Without a runtime PyCOMPSs runs the task here and returns its value
        # (the task functions never raise), which compss_wait_on then passes through.
        future = self._task(*task_args)
        if not self._warned and isinstance(future, (ChunkResult, self._task_error)):
            self._warned = True
            log.warning("no COMPSs runtime (not launched by runcompss/enqueue_compss): tasks run one by one "
                        "in this process")
        self._futures.append((key, future, time.monotonic(), limit))

    def poll(self, timeout: float) -> list[Outcome]:
        """The oldest chunk's outcome, waiting for it as long as it takes (COMPSs has no wait-any)."""
        if not self._futures:
            return []
        assert self._wait_on is not None
        key, future, _, _ = self._futures[0]
        value = self._wait_on(future)
        self._futures.popleft()
        return [self._outcome(key, value)]

    def _setup_failed(self, key: Any, error: Any) -> Outcome:
        """A task could not load the model: abort if that is consistent, else retry after the pause."""
        now = time.monotonic()
        host = error.host or "an unnamed node"
        other = next(((h, t) for h, t in self._setup_failures.items() if h != host), None)
        if other is not None:
            raise RunAborted(f"a COMPSs task could not load the model on {host}: {error.text}; nor on {other[0]}: "
                             f"{other[1][1]}")
        first = self._setup_failures.get(host)
        if first is not None and now - first[0] >= self.setup_pause:
            raise RunAborted(f"a COMPSs task could not load the model: {error.text} (on {host}, again "
                             f"{now - first[0]:.0f}s after the first time)")
        self._setup_failures.setdefault(host, (now, error.text))
        log.warning("a COMPSs task could not load the model on %s (%s); the chunk is retried in %gs", host,
                    error.text, self.setup_pause)
        return Outcome(key, failure=error.text, retry_after=self.setup_pause)

    def running(self) -> list[tuple[Any, str, float, float | None]]:
        """The chunk the ordered gather waits on (COMPSs says nothing of which executor runs it)."""
        if not self._futures:
            return []
        key, _, submitted, limit = self._futures[0]
        return [(key, "a COMPSs executor (oldest task; since submission)", time.monotonic() - submitted, limit)]

    def _outcome(self, key: Any, value: Any) -> Outcome:
        if isinstance(value, ChunkResult):
            self.clock.record_result(value)
            if value.timing is not None:
                self._setup_failures.pop(value.timing.host, None)  # that node loads the model now
            return Outcome(key, value=value)
        if isinstance(key, tuple) and key[:1] == ("index",) and value is not None \
                and not isinstance(value, self._task_error):
            return Outcome(key, value=value)  # a shard index (run/sources/shards.py checks its type)
        if isinstance(value, self._task_error):
            if value.setup:
                return self._setup_failed(key, value)
            return Outcome(key, failure=value.text)
        if value is None:
            return Outcome(key, failure=NONE_TEXT)
        return Outcome(key, failure=f"TaskFailed: the task returned a {type(value).__name__}, not a ChunkResult")
