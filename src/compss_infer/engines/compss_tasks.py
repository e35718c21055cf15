"""The PyCOMPSs task functions: module-level, imported by name on every COMPSs worker.

Only the compss engine imports this module (it imports ``pycompss``).  The decorators are fixed
when it is imported: ``$COMPSS_INFER_CU`` is expanded by the COMPSs master JVM from its own
environment, read at start-up (so the launch scripts export it and the engine only checks it), and
``COMPSS_INFER_TIME_OUT`` (the executor's ``time_out`` alarm, a backstop; 0 = none) is read here.

Each task is a thin supervisor.  The COMPSs executor never runs TensorFlow itself: it hands the
chunk to a persistent child process it owns (the local engine's worker machinery, one worker),
which holds the model cache.  So nothing a chunk does can kill or wedge the executor, which the
real runtime never replaces (a dead executor's slot fails every later task at once):

* the child dies (segfault, OOM kill): it is replaced, and the chunk comes back as a failure;
* the chunk runs past the time limit the master passed with it (``limit``, plus ``load`` seconds
  when the child loads the model first): the child is killed and the chunk comes back as a
  ``Timeout`` failure, never as a model error;
* ``TimeOutError``/``CancelError`` (the runtime's alarm and cancel signal, raised in the
  supervisor while it waits) kill the child and propagate: they are never swallowed.

``on_failure="IGNORE"``: a task that fails anyway comes back from ``compss_wait_on`` as None
instead of stopping the COMPSs run; the master retries and splits the chunk.  An exception in the
chunk comes back as a :class:`TaskError` value, so that the master learns why.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

from pycompss.api.constraint import constraint
from pycompss.api.parameter import FILE_IN
from pycompss.api.task import task

from ..core.contracts import ChunkResult, WorkerSpec
from ..core.errors import CompssInferError, RunAborted
from .compss_env import TIME_OUT_ENV
from ..worker import classify_chunk, warm_up
from .base import failure_text

TIME_OUT = int(os.environ.get(TIME_OUT_ENV) or 0)
GPU_PROCESSORS = [{"processorType": "CPU", "computingUnits": "1"},
                  {"processorType": "GPU", "computingUnits": "1"}]
CHILD_START_METHOD = "forkserver"


@dataclass(frozen=True)
class TaskError:
    """A task that failed: ``text`` is ``Kind: reason``; ``setup`` = the model could not be loaded."""

    text: str
    setup: bool = False


@dataclass
class _Child:
    """This executor's child process (a one-worker local engine) and what it was started for."""

    engine: Any
    key: tuple[Any, ...]
    loaded: bool = False


_CHILD: list[_Child] = []  # per executor: the child that holds the model cache (at most one)


def _drop_child() -> None:
    """Kill this executor's child (it is started afresh for the next chunk)."""
    while _CHILD:
        _CHILD.pop().engine.close(abort=True)


def _child_for(spec: WorkerSpec) -> _Child:
    """The child for ``spec`` under this task's threads and GPU; a different one replaces it."""
    from ..model.formats import preload_modules
    from .local import LocalEngine
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
    key = (spec, os.environ.get("COMPSS_NUM_THREADS"), gpu)
    if _CHILD and _CHILD[0].key != key:
        _drop_child()
    if not _CHILD:
        engine = LocalEngine(workers=1, start_method=CHILD_START_METHOD, task_timeout=None,
                             gpus=[gpu] if gpu is not None else None,
                             preload=preload_modules(spec.model.path))  # a .tflite child: no TensorFlow
        engine.start(warm_up, spec)
        _CHILD.append(_Child(engine, key))
        if len(_CHILD) == 1:
            atexit.register(_drop_child)
    return _CHILD[0]


def supervise(spec: WorkerSpec, paths: Sequence[str], limit: float = 0, load: float = 0) -> ChunkResult | TaskError:
    """Run ``classify_chunk(spec, paths)`` in this executor's child, within ``limit`` (+ ``load``) seconds."""
    started = time.monotonic()
    try:
        child = _child_for(spec)
        allowed = (limit + (0 if child.loaded else load)) if limit else None
        deadline = None if allowed is None else started + allowed
        child.engine.submit(0, classify_chunk, spec, list(paths))
        while True:
            error = child.engine.startup_error()
            if error is not None:  # a model error is the same on every try; repeated crashes are not
                _drop_child()
                return TaskError(failure_text(error), setup=not isinstance(error, RunAborted))
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            for outcome in child.engine.poll(wait):
                child.loaded = True
                if outcome.failure is not None:
                    return TaskError(outcome.failure)
                return outcome.value
            if child.engine.ready():
                child.loaded = True
            if deadline is not None and time.monotonic() >= deadline:
                what = "while loading the model" if not child.loaded else "classifying"
                _drop_child()
                return TaskError(f"Timeout: the chunk ran past its time limit of {allowed:.0f}s ({what}; "
                                 f"its child process was killed)")
    except CompssInferError as exc:  # the child keeps failing to start (RunAborted): a failure to retry
        _drop_child()
        return TaskError(exc.one_line())
    except BaseException:  # TimeOutError, CancelError (runtime signals), SystemExit: kill the child, propagate
        _drop_child()
        raise


def staged_spec(spec: WorkerSpec, local_model: str) -> WorkerSpec:
    """The spec with the model path replaced by the copy COMPSs transferred to this worker.

    The task gets ``<job sandbox>/<model name>``, a link that goes with the sandbox after the job, to
    the renamed copy in the worker's working dir (one per node and file version): the copy is the
    path to keep, as the model cache is keyed by the path.  A text GraphDef is told apart by its
    ``.pbtxt`` name, so a renamed one is reached through a symlink with that suffix, in a folder of
    this executor process.
    """
    path = os.path.realpath(local_model)
    if spec.model.path.endswith(".pbtxt") and not path.endswith(".pbtxt"):
        folder = os.path.join(tempfile.gettempdir(), f"compss-infer-staged-{os.getpid()}")
        if not os.path.isdir(folder):
            os.makedirs(folder)
            atexit.register(shutil.rmtree, folder, True)
        link = os.path.join(folder, path.strip(os.sep).replace(os.sep, "_") + ".pbtxt")
        if not os.path.islink(link):
            os.symlink(path, link)
        path = link
    return replace(spec, model=replace(spec.model, path=path))


@constraint(computing_units="$COMPSS_INFER_CU")
@task(returns=1, on_failure="IGNORE", time_out=TIME_OUT)
def _classify_task(spec: WorkerSpec, paths: list[str], limit: float, load: float) -> ChunkResult | TaskError:
    return supervise(spec, paths, limit, load)


@constraint(processors=GPU_PROCESSORS)
@task(returns=1, on_failure="IGNORE", time_out=TIME_OUT)
def _classify_task_gpu(spec: WorkerSpec, paths: list[str], limit: float, load: float) -> ChunkResult | TaskError:
    return supervise(spec, paths, limit, load)


@constraint(computing_units="$COMPSS_INFER_CU")
@task(returns=1, model=FILE_IN, on_failure="IGNORE", time_out=TIME_OUT)
def _classify_task_staged(spec: WorkerSpec, paths: list[str], model: str, limit: float,
                          load: float) -> ChunkResult | TaskError:
    return supervise(staged_spec(spec, model), paths, limit, load)


@constraint(processors=GPU_PROCESSORS)
@task(returns=1, model=FILE_IN, on_failure="IGNORE", time_out=TIME_OUT)
def _classify_task_gpu_staged(spec: WorkerSpec, paths: list[str], model: str, limit: float,
                              load: float) -> ChunkResult | TaskError:
    return supervise(staged_spec(spec, model), paths, limit, load)


def choose(device: str, stage_model: bool):
    """The task function for a session device and model distribution."""
    if device == "gpu":
        return _classify_task_gpu_staged if stage_model else _classify_task_gpu
    return _classify_task_staged if stage_model else _classify_task
