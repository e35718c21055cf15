"""The engine contract shared by all engines."""
from __future__ import annotations

import pickle
import signal
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..core.errors import CompssInferError, ModelError


@dataclass
class Outcome:
    """What became of one submitted task: a value, or a failure text ``Kind: reason``.

    ``retry_after``: the failure was probably not the task's (a model file that could not be read
    for a moment on one node), so the scheduler reruns it whole after a pause instead of counting
    it against its images.
    """

    key: Any
    value: Any = None
    failure: str | None = None
    retry_after: float | None = None  # run the task again as it is, no sooner than this (seconds)


class Engine(Protocol):
    """Run tasks and report outcomes.  ``start`` may return before workers are ready."""

    name: str

    def start(self, init: Callable[[Any], Any], init_arg: Any) -> None:
        """Start workers; each runs ``init(init_arg)`` first (load the model)."""

    def preflight(self) -> Any:
        """Block until one worker finished ``init``; return its value or raise its error."""

    def slots(self) -> int:
        """How many tasks to keep submitted to keep every worker busy."""

    def submit(self, key: Any, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; its Outcome comes back from ``poll`` with ``key``."""

    def poll(self, timeout: float) -> list[Outcome]:
        """Outcomes finished since the last call, waiting up to ``timeout`` seconds for one."""

    def close(self, abort: bool = False) -> None:
        """Stop workers (at once if ``abort``)."""


def describe_exit(code: int | None) -> str:
    """How a process ended, from its exit code (negative = killed by that signal)."""
    if code is None:
        return "is gone"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def failure_text(exc: BaseException) -> str:
    """``Kind: reason`` on one line, for an exception a task raised."""
    if isinstance(exc, CompssInferError):
        return exc.one_line()
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def portable_error(exc: BaseException) -> BaseException:
    """An exception safe to send to the master: our own errors as they are, others as ModelError."""
    if isinstance(exc, CompssInferError):
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:
            pass
    return ModelError(f"model load failed in a worker: {failure_text(exc)}")
