"""The PyCOMPSs task functions: module-level, imported by name on every COMPSs worker.

Only the compss engine imports this module (it imports ``pycompss``).  The decorators are fixed
when it is imported, so two values come from the master's environment, which the engine checks
(and the launch scripts export) first: ``$COMPSS_INFER_CU``, expanded by COMPSs when it registers
the task type, and ``COMPSS_INFER_TIME_OUT``, read here.

Every task runs ``worker.classify_chunk`` unchanged.  ``on_failure="IGNORE"``: a chunk whose
executor dies (segfault, OOM kill) or that runs past ``time_out`` comes back from
``compss_wait_on`` as None instead of stopping the COMPSs run; the master retries and splits it.
An exception inside the task is returned as a :class:`TaskError` value so that the master learns
why (a None says only that something went wrong).
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from typing import Sequence

from pycompss.api.constraint import constraint
from pycompss.api.parameter import FILE_IN
from pycompss.api.task import task

from ..contracts import ChunkResult, WorkerSpec
from ..errors import CompssInferError
from ..launch import DEFAULT_TIME_OUT, TIME_OUT_ENV
from ..worker import classify_chunk
from .base import failure_text

TIME_OUT = int(os.environ.get(TIME_OUT_ENV) or DEFAULT_TIME_OUT)
GPU_PROCESSORS = [{"processorType": "CPU", "computingUnits": "1"},
                  {"processorType": "GPU", "computingUnits": "1"}]


@dataclass(frozen=True)
class TaskError:
    """A task that raised: ``text`` is ``Kind: reason``; ``setup`` = the model could not be loaded."""

    text: str
    setup: bool = False


_FIRST_GPU: list[str] = []  # per executor: the GPU the cached session was built on


def _run(spec: WorkerSpec, paths: Sequence[str]) -> ChunkResult | TaskError:
    try:
        return classify_chunk(spec, paths)
    except CompssInferError as exc:  # model missing/corrupt/no GPU on this worker: not the images' fault
        return TaskError(exc.one_line(), setup=True)
    except Exception as exc:  # noqa: BLE001 - report it; the master retries and splits the chunk
        return TaskError(failure_text(exc))


def _note_gpu() -> None:
    """CUDA reads CUDA_VISIBLE_DEVICES once per process: a cached session stays on its first GPU."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if not _FIRST_GPU:
        _FIRST_GPU.append(visible)
    elif visible != _FIRST_GPU[0]:
        print(f"compss-infer: executor {os.getpid()} was assigned GPU {visible!r} but its TensorFlow session "
              f"stays on GPU {_FIRST_GPU[0]!r}, the one of its first task", file=sys.stderr)


def staged_spec(spec: WorkerSpec, local_model: str) -> WorkerSpec:
    """The spec with the model path replaced by the copy COMPSs transferred to this worker.

    COMPSs renames transferred files, and a text GraphDef is told apart by its ``.pbtxt`` name, so a
    renamed one is reached through a symlink with that suffix, in a folder of this executor process
    (not the task's sandbox, which goes away: the model cache is keyed by the path).
    """
    path = os.path.abspath(local_model)
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
def _classify_task(spec: WorkerSpec, paths: list[str]) -> ChunkResult | TaskError:
    return _run(spec, paths)


@constraint(processors=GPU_PROCESSORS)
@task(returns=1, on_failure="IGNORE", time_out=TIME_OUT)
def _classify_task_gpu(spec: WorkerSpec, paths: list[str]) -> ChunkResult | TaskError:
    _note_gpu()
    return _run(spec, paths)


@constraint(computing_units="$COMPSS_INFER_CU")
@task(returns=1, model=FILE_IN, on_failure="IGNORE", time_out=TIME_OUT)
def _classify_task_staged(spec: WorkerSpec, paths: list[str], model: str) -> ChunkResult | TaskError:
    return _run(staged_spec(spec, model), paths)


@constraint(processors=GPU_PROCESSORS)
@task(returns=1, model=FILE_IN, on_failure="IGNORE", time_out=TIME_OUT)
def _classify_task_gpu_staged(spec: WorkerSpec, paths: list[str], model: str) -> ChunkResult | TaskError:
    _note_gpu()
    return _run(staged_spec(spec, model), paths)


def choose(device: str, stage_model: bool):
    """The task function for a session device and model distribution."""
    if device == "gpu":
        return _classify_task_gpu_staged if stage_model else _classify_task_gpu
    return _classify_task_staged if stage_model else _classify_task
