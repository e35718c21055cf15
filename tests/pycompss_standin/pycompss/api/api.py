"""``from pycompss.api.api import compss_wait_on, compss_barrier, ...`` (the stand-in's subset)."""
from __future__ import annotations

from typing import Any

from .. import _standin_runtime as _rt


def compss_wait_on(*objs: Any) -> Any:
    """The value of a future (None for a failed IGNORE task); a list is waited element by element."""
    if len(objs) == 1:
        return _rt.wait_on(objs[0])
    return [_rt.wait_on(o) for o in objs]


def compss_barrier(no_more_tasks: bool = False) -> None:
    """Wait for every submitted task."""
    _rt.barrier()


def _not_simulated(name: str):
    def missing(*_: Any, **__: Any) -> Any:
        raise NotImplementedError(f"{name} is not provided by the pycompss stand-in")
    missing.__name__ = name
    return missing


compss_wait_on_file = _not_simulated("compss_wait_on_file")
compss_open = _not_simulated("compss_open")
compss_barrier_group = _not_simulated("compss_barrier_group")
TaskGroup = _not_simulated("TaskGroup")
