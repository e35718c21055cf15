"""The ``compss`` engine: chunks run as PyCOMPSs tasks, gathered in order with ``compss_wait_on``.

PyCOMPSs has no wait-any, so the master keeps the scheduler's bounded window of submitted chunks
and waits on the oldest one first: results come back in submission order, memory stays flat, and
progress moves as chunks finish.  A chunk that failed (``compss_wait_on`` gives None under
``on_failure="IGNORE"``, or the task returned a :class:`~.compss_tasks.TaskError`) is reported as
a failure, and the scheduler retries and splits it down to single images.

Each chunk carries its time limit (``run.task_timeout``, by default the ``auto`` rule of
:mod:`compss_infer.engines.timelimit`, fed by the chunks that finished): the task's supervisor kills its
child past it, so a hung chunk holds the ordered gather for at most its limit.

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

log = logging.getLogger("compss_infer")
TASKS_MODULE = "compss_infer.engines.compss_tasks"
NONE_TEXT = ("TaskFailed: the COMPSs task failed (compss_wait_on gave None: its executor died, it ran past "
             "time_out, or it raised; see the COMPSs job logs)")


def _preflight_main(conn: Any, init: Callable[[Any], Any], arg: Any) -> None:
    """The short-lived model check: load the model once, send back its ModelInfo or the error."""
    try:
        conn.send(("ok", init(arg)))
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the master
        conn.send(("error", portable_error(exc)))


class CompssEngine:
    """Submit chunk tasks to COMPSs; ``poll`` waits on the oldest one (ordered streaming gather)."""

    name = "compss"

    def __init__(self, workers: int | None = 1, task_timeout: TimeLimitPolicy | float | str | None = "auto",
                 stage_model: bool = False, device: str = "cpu", **_: Any):
        self.workers = max(1, workers or 1)
        self.clock = ChunkClock(TimeLimitPolicy.from_setting(task_timeout))
        self.stage_model = stage_model
        self.device = device
        self.replaced = 0  # executors are COMPSs's business; kept for the run summary
        self._futures: deque[tuple[Any, Any, float, float | None]] = deque()  # key, future, submitted, limit
        self._task: Callable[..., Any] | None = None
        self._wait_on: Callable[[Any], Any] | None = None
        self._model_path = ""
        self._check: tuple[Any, Any] | None = None  # (process, connection) of the model check
        self._warned = False
        self._task_error: type = type(None)

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

    # ------------------------------------------------------------------ tasks
    def submit(self, key: Any, fn: Callable[..., Any], *args: Any) -> None:
        """Submit ``classify_chunk(spec, paths)`` as a COMPSs task (the only function it runs)."""
        from ..worker import classify_chunk
        if fn is not classify_chunk or len(args) != 2:
            raise ValueError("the compss engine runs compss_infer.worker.classify_chunk(spec, paths) only")
        spec, paths = args
        relative = next((p for p in paths if not os.path.isabs(p)), None)
        if relative is not None:
            raise ValueError(f"COMPSs tasks run in a sandbox: image paths must be absolute, got {relative!r}")
        assert self._task is not None, "start() first"
        policy = self.clock.policy
        limit = self.clock.limit(len(paths))
        load = policy.load_allowance
        task_args = (spec, list(paths)) + ((self._model_path,) if self.stage_model else ()) + (limit or 0, load)
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

    def running(self) -> list[tuple[Any, str, float, float | None]]:
        """The chunk the ordered gather waits on (COMPSs says nothing of which executor runs it)."""
        if not self._futures:
            return []
        key, _, submitted, limit = self._futures[0]
        return [(key, "a COMPSs executor (oldest task; since submission)", time.monotonic() - submitted, limit)]

    def _outcome(self, key: Any, value: Any) -> Outcome:
        if isinstance(value, ChunkResult):
            self.clock.record_result(value)
            return Outcome(key, value=value)
        if isinstance(value, self._task_error):
            if value.setup:
                raise RunAborted(f"a COMPSs task could not load the model: {value.text}")
            return Outcome(key, failure=value.text)
        if value is None:
            return Outcome(key, failure=NONE_TEXT)
        return Outcome(key, failure=f"TaskFailed: the task returned a {type(value).__name__}, not a ChunkResult")
