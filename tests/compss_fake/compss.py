"""A pure-Python stand-in for the ``compss`` C extension (tests only): the Java runtime, faked.

The real PyCOMPSs 3.3 binding (``../shared/third_party/compss-3.3/python``, untouched) does
``import compss`` on the master (``runtime/management/link/direct.py``) and in every piper executor
(``worker/piper/commons/executor.py``).  This module answers both with the function table of the
real extension (``runtime/management/COMPSs.py`` lists it; ``app_id`` is always 0):

* master side: ``start_runtime`` starts the fake JVM (``fakejvm.runtime.Runtime``, configured by the
  options file runcompss writes, ``$JVM_OPTIONS_FILE``), which starts the real piper worker; the
  other calls are the JVM's API;
* worker side: ``set_pipes``/``read_pipes``, the executor's end of its command pipe.

Nothing of the binding is replaced: only what the JVM would do.  See ``fakejvm/`` for each rule and
the Java file it was read from, and ``docs/cluster.md`` for what is real and what is inferred.
"""
from __future__ import annotations

import os
import sys
from typing import Any

_RUNTIME: Any = None  # the master's fake JVM (None in executors, and before start / after stop)


def runtime() -> Any:
    """The running fake JVM of this process (tests read its jobs and executors)."""
    return _RUNTIME


def _rt() -> Any:
    if _RUNTIME is None:
        raise RuntimeError("fake COMPSs: the runtime is not started")
    return _RUNTIME


# --------------------------------------------------------------------------- lifecycle

def start_runtime() -> None:
    """Start the JVM: read the options file, snapshot the environment, start the node and its workers."""
    global _RUNTIME
    from fakejvm.start import runtime_from_options
    if _RUNTIME is not None:
        raise RuntimeError("fake COMPSs: the runtime is already started in this process")
    _RUNTIME = runtime_from_options(os.environ.get("JVM_OPTIONS_FILE"))


def stop_runtime(code: int) -> None:
    global _RUNTIME
    runtime, _RUNTIME = _rt(), None
    runtime.stop(code)


def set_debug(mode: bool) -> None:
    pass


def get_logging_path() -> str:
    return _rt().log_dir  # with its trailing "/": the binding appends file names


def get_master_working_path() -> str:
    return _rt().master_dir


def set_wall_clock(app_id: int, wcl: float) -> None:
    print(f"[fake COMPSs] WARNING: the wall clock limit ({wcl} s) is not modelled", file=sys.stderr)


# --------------------------------------------------------------------------- tasks

def register_core_element(ce_signature: str, impl_signature: str, impl_constraints: str, impl_type: str,
                          impl_local: str, impl_io: str, prolog: list, epilog: list, container: list,
                          type_args: list) -> None:
    if impl_type != "METHOD":
        raise NotImplementedError(f"fake COMPSs: {impl_type} implementations are not modelled")
    _rt().register(ce_signature, impl_constraints or "", list(type_args))


def process_task(app_id: int, signature: str, on_failure: str, time_out: int, has_priority: bool, num_nodes: int,
                 reduction: bool, chunk_size: int, replicated: bool, distributed: bool, has_target: bool,
                 num_returns: int, values: list, names: list, types: list, directions: list, streams: list,
                 prefixes: list, content_types: list, weights: list, keep_renames: list) -> None:
    """Enqueue one task and return at once (the master waits later, in open_file)."""
    from fakejvm.runtime import Param
    if num_nodes != 1 or reduction or replicated or distributed:
        raise NotImplementedError("fake COMPSs: multi-node, reduce, replicated and distributed tasks are not modelled")
    params = [Param(value=v, name=n, type=int(t), direction=int(d), stream=int(s), prefix=str(p),
                    content_type=str(c), keep_rename=bool(k))
              for v, n, t, d, s, p, c, k in zip(values, names, types, directions, streams, prefixes,
                                                content_types, keep_renames)]
    _rt().submit(signature, on_failure, time_out, has_priority, has_target, num_returns, params)


def process_http_task(*args: Any) -> None:
    raise NotImplementedError("fake COMPSs: HTTP tasks are not modelled")


def cancel_application_tasks(app_id: int, value: int) -> None:
    _rt().cancel_all()


# --------------------------------------------------------------------------- data

def open_file(app_id: int, file_name: str, mode: int) -> str:
    return _rt().open_file(file_name)


def close_file(app_id: int, file_name: str, mode: int) -> None:
    pass


def delete_file(app_id: int, file_name: str, wait: bool, application_delete: bool = True) -> bool:
    return _rt().delete_file(file_name, bool(wait))


def get_file(app_id: int, file_name: str) -> None:
    _rt().get_file(file_name)


def get_directory(app_id: int, directory_name: str) -> None:
    raise NotImplementedError("fake COMPSs: directories are not modelled")


def accessed_file(app_id: int, file_name: str) -> bool:
    return _rt().accessed(file_name)


def barrier(app_id: int, no_more_tasks: bool) -> None:
    _rt().barrier()


def snapshot(app_id: int) -> None:
    pass


def barrier_group(app_id: int, group_name: str) -> str:
    raise NotImplementedError("fake COMPSs: task groups are not modelled")


def open_task_group(group_name: str, implicit_barrier: bool, app_id: int) -> None:
    raise NotImplementedError("fake COMPSs: task groups are not modelled")


close_task_group = cancel_task_group = open_task_group


def get_number_of_resources(app_id: int) -> int:
    return 1


def request_resources(app_id: int, num_resources: int, group_name: str) -> None:
    pass


def free_resources(app_id: int, num_resources: int, group_name: str) -> None:
    pass


# --------------------------------------------------------------------------- executor side

_PIPE: dict[str, Any] = {}


def set_pipes(pipe_out: str, pipe_in: str) -> None:
    """The executor's pipes: ``COMPSs.set_pipes(pipe.output_pipe, pipe.input_pipe)`` (executor.py)."""
    _PIPE.update(path=pipe_in, fd=None, buffer=b"")


def read_pipes() -> str:
    """The next non-empty line the Java side wrote to this executor (blocks until there is one).

    When the Java side is gone (end of file: the master process died) the executor exits at once:
    fake hygiene, so that a killed test leaves no executor behind."""
    if _PIPE.get("fd") is None:
        _PIPE["fd"] = os.open(_PIPE["path"], os.O_RDONLY)
    while True:
        if b"\n" in _PIPE["buffer"]:
            line, _PIPE["buffer"] = _PIPE["buffer"].split(b"\n", 1)
            if line.strip():
                return line.decode().strip()
            continue
        chunk = os.read(_PIPE["fd"], 65536)
        if not chunk:
            os._exit(0)
        _PIPE["buffer"] += chunk
