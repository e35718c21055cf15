"""In-process engine, for debugging: tasks run one at a time in the master, in order."""
from __future__ import annotations

from collections import deque
from typing import Any, Callable

from .base import Outcome, failure_text


class SequentialEngine:
    """No processes, no timeouts: a failing task comes back as a failure, a crash is a crash."""

    name = "sequential"

    def __init__(self, **_: Any):
        self._queue: deque = deque()
        self._init: tuple[Callable[[Any], Any], Any] | None = None

    def start(self, init: Callable[[Any], Any], init_arg: Any) -> None:
        self._init = (init, init_arg)

    def preflight(self) -> Any:
        assert self._init is not None, "start() first"
        fn, arg = self._init
        return fn(arg)

    def slots(self) -> int:
        return 1

    def submit(self, key: Any, fn: Callable[..., Any], *args: Any) -> None:
        self._queue.append((key, fn, args))

    def poll(self, timeout: float) -> list[Outcome]:
        if not self._queue:
            return []
        key, fn, args = self._queue.popleft()
        try:
            return [Outcome(key, value=fn(*args))]
        except Exception as exc:
            return [Outcome(key, failure=failure_text(exc))]

    def close(self, abort: bool = False) -> None:
        self._queue.clear()
