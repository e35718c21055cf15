"""Engines run tasks (a module-level function and its arguments) somewhere and report outcomes.

They know nothing about TensorFlow or images: ``sequential`` runs tasks in this process,
``local`` in a pool of worker processes on this node, ``compss`` as PyCOMPSs tasks (``compss_tasks``
holds the decorated task functions COMPSs imports by name, ``compss_env`` the task environment).
``timelimit`` is the one time-limit rule every engine applies.

May import: ``worker``, ``model``, ``images``, ``core``; pycompss only inside the compss modules.
"""
from __future__ import annotations

from typing import Any

from ..core.errors import ConfigError
from .base import Engine, Outcome

__all__ = ["Engine", "Outcome", "make_engine"]


def make_engine(name: str, **options: Any) -> Engine:
    """Build an engine by name; imports only what that engine needs."""
    if name == "sequential":
        from .sequential import SequentialEngine
        return SequentialEngine(**options)
    if name == "local":
        from .local import LocalEngine
        return LocalEngine(**options)
    if name == "compss":
        from .compss import CompssEngine
        return CompssEngine(**options)
    raise ConfigError(f"run.engine: unknown engine {name!r}")
