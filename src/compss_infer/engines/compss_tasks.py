"""The PyCOMPSs task functions: module-level, imported by name on every COMPSs worker.

Only the compss engine imports this module (it imports ``pycompss``).  The decorators are fixed
when it is imported: ``$COMPSS_INFER_CU`` is expanded by the COMPSs master JVM from its own
environment, read at start-up (so the launch scripts export it and the engine only checks it), and
``COMPSS_INFER_TIME_OUT`` (the executor's ``time_out`` alarm, a backstop; 0 = none) is read here.

Each task is a thin client.  The COMPSs executor never runs TensorFlow itself, and owns no model:
it hands the chunk to the node's inference server for this model, device and thread count
(:mod:`.nodeserver`, started by the first task that needs it, shared by every executor of the node),
and waits for the answer within a bound (:mod:`.nodeclient`).  So nothing a chunk does can kill or
wedge the executor, which the real runtime never replaces (a dead executor's slot fails every later
task at once), and a node holds one loaded model per device, not one per executor:

* the worker running the chunk dies (segfault, OOM kill): the chunk comes back as a failure and the
  server starts another worker for the next chunk;
* the chunk runs past the time limit the master passed with it (``limit``, plus ``load`` seconds
  when the chunk waits for a worker to load the model): its worker is killed and the chunk comes
  back as a ``Timeout`` failure, never as a model error;
* ``TimeOutError``/``CancelError`` (the runtime's alarm and cancel signal, raised in the task while
  it waits) close the connection, so the server kills the chunk's worker, and propagate: they are
  never swallowed.

``on_failure="IGNORE"``: a task that fails anyway comes back from ``compss_wait_on`` as None
instead of stopping the COMPSs run; the master retries and splits the chunk.  An exception in the
chunk comes back as a :class:`TaskError` value, so that the master learns why.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Sequence

from pycompss.api.constraint import constraint
from pycompss.api.parameter import FILE_IN
from pycompss.api.task import task

from ..core.contracts import ChunkResult, TaskError, WorkerSpec
from .base import failure_text
from .compss_env import TIME_OUT_ENV
from .nodeclient import run_chunk

__all__ = ["TaskError", "choose", "choose_shard_staged", "index_task", "index_task_staged", "supervise",
           "staged_spec"]

TIME_OUT = int(os.environ.get(TIME_OUT_ENV) or 0)
GPU_PROCESSORS = [{"processorType": "CPU", "computingUnits": "1"},
                  {"processorType": "GPU", "computingUnits": "1"}]


def supervise(spec: WorkerSpec, paths: Sequence[str], limit: float = 0, load: float = 0) -> ChunkResult | TaskError:
    """Classify ``paths`` on the node's server for ``spec``, within ``limit`` (+ ``load``) seconds."""
    return run_chunk(spec, paths, limit, load)


def staged_spec(spec: WorkerSpec, local_model: str) -> WorkerSpec:
    """The spec with the model path replaced by the copy COMPSs transferred to this worker.

    The task sees the copy through a link in its job sandbox, which COMPSs deletes after the job, so
    the spec names the renamed copy itself (it stays for the run, and keys the node's server and
    its model cache).  A text GraphDef is told apart by its ``.pbtxt`` name, so a renamed one is
    reached through a ``.pbtxt`` symlink beside the copy: in COMPSs's worker folder, which goes
    away with the run (nothing of ours is left in the temp folder: an executor never runs atexit).
    """
    path = os.path.realpath(local_model)
    if spec.model.path.endswith(".pbtxt") and not path.endswith(".pbtxt"):
        link = path + ".pbtxt"
        if not os.path.islink(link):
            temp = f"{link}.{os.getpid()}.tmp"
            try:
                os.symlink(path, temp)
                os.replace(temp, link)  # atomic: another executor may be doing the same
            except FileExistsError:
                pass
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


def _index(path: str, size: int) -> Any:
    from ..images.shards import index_shard
    try:
        return index_shard(path, size)
    except Exception as exc:  # noqa: BLE001 - the master retries, then reports the shard
        return TaskError(failure_text(exc))


@task(returns=1, on_failure="IGNORE", time_out=TIME_OUT)
def index_task(path: str, size: int) -> Any:
    """A tar shard's index (headers only; no model, no child process: nothing here runs TensorFlow)."""
    return _index(path, size)


@task(returns=1, shard=FILE_IN, on_failure="IGNORE", time_out=TIME_OUT)
def index_task_staged(shard: str, size: int) -> Any:
    """``index_task`` on the copy of the shard COMPSs transferred to this node."""
    return _index(shard, size)


@constraint(computing_units="$COMPSS_INFER_CU")
@task(returns=1, shard=FILE_IN, model=FILE_IN, on_failure="IGNORE", time_out=TIME_OUT)
def _classify_shard_task_staged(spec: WorkerSpec, part: Any, shard: str, model: str, limit: float,
                                load: float) -> ChunkResult | TaskError:
    return supervise(staged_spec(spec, model), part.staged(shard), limit, load)


@constraint(processors=GPU_PROCESSORS)
@task(returns=1, shard=FILE_IN, model=FILE_IN, on_failure="IGNORE", time_out=TIME_OUT)
def _classify_shard_task_gpu_staged(spec: WorkerSpec, part: Any, shard: str, model: str, limit: float,
                                    load: float) -> ChunkResult | TaskError:
    return supervise(staged_spec(spec, model), part.staged(shard), limit, load)


def choose_shard_staged(device: str):
    """The task for a shard slice whose shard (and the model) COMPSs stages to the node: one FILE_IN each."""
    return _classify_shard_task_gpu_staged if device == "gpu" else _classify_shard_task_staged


def choose(device: str, stage_model: bool):
    """The task function for a session device and model distribution."""
    if device == "gpu":
        return _classify_task_gpu_staged if stage_model else _classify_task_gpu
    return _classify_task_staged if stage_model else _classify_task
