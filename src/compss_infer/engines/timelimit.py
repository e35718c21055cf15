"""How long a chunk may run before it is treated as hung: one rule for every engine.

``run.task_timeout`` is ``auto`` (the default), a number of seconds (a fixed limit) or ``none``.

The ``auto`` rule, for a chunk of ``n`` images::

    limit = max(floor, factor * median_seconds_per_image * n)      once some chunk has finished
    limit = first                                                   while none has (10 x floor)
    + load allowance (5 x floor)                                    when the model is loaded first

A fixed number is the limit itself (plus the same load allowance: loading is not the chunk's work).

with ``floor`` = ``run.task_timeout_floor`` (default 60 s) and ``factor`` = 10.  Why these numbers:
per-image time varies with image size and with neighbours on a shared node, by 2-3x in practice;
10x leaves a wide margin, so a chunk killed by the rule was stuck, not slow.  The median, not the
mean, so that one slow retry does not loosen the limit for everyone.  The floor keeps small chunks
from being killed for start-up noise (a thread pool spinning up, a cold page cache).  Before any
chunk finished there is nothing to measure, so a generous fixed limit holds.  Loading a model (a
big graph from a shared file system) is not the images' time: it gets its own allowance.  A chunk
past its limit is killed and comes back as a ``Timeout`` failure, which the scheduler retries and
splits like any other failure; so a hung image costs its own row and at most a few limits of time.
"""
from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

DEFAULT_FLOOR = 60.0
FACTOR = 10.0
FIRST_FACTOR = 10.0  # no chunk finished yet: first = 10 x floor
LOAD_FACTOR = 5.0  # the model-loading allowance = 5 x floor
KEEP = 200  # the median over the most recent finished chunks


@dataclass(frozen=True)
class TimeLimitPolicy:
    """``auto`` (derived from finished chunks), a fixed number of seconds, or no limit."""

    auto: bool = True
    fixed: float | None = None  # only when not auto; None = no limit
    floor: float = DEFAULT_FLOOR

    @classmethod
    def from_setting(cls, value: Any, floor: float | None = None) -> "TimeLimitPolicy":
        """From ``run.task_timeout``: "auto", a positive number, or None/"none"."""
        floor = DEFAULT_FLOOR if floor is None else float(floor)
        if isinstance(value, TimeLimitPolicy):
            return value
        if value == "auto":
            return cls(True, None, floor)
        if value is None or value == "none":
            return cls(False, None, floor)
        return cls(False, float(value), floor)

    @property
    def load_allowance(self) -> float:
        """Extra seconds for a chunk that loads the model first (0 when there is no limit at all)."""
        return LOAD_FACTOR * self.floor if self.auto or self.fixed else 0.0

    def describe(self) -> str:
        if self.auto:
            return f"run.task_timeout=auto (floor {self.floor:g}s)"
        return f"run.task_timeout={self.fixed:g}s" if self.fixed else "run.task_timeout=none"


@dataclass
class ChunkClock:
    """Finished chunks' seconds per image, and the limit they give the next chunk."""

    policy: TimeLimitPolicy = field(default_factory=TimeLimitPolicy)
    _per_image: deque = field(default_factory=lambda: deque(maxlen=KEEP))

    def record(self, n_images: int, seconds: float) -> None:
        """A chunk of ``n_images`` finished after ``seconds`` of its own work (model load excluded)."""
        if n_images > 0 and seconds >= 0:
            self._per_image.append(seconds / n_images)

    def record_result(self, value: Any) -> None:
        """Record a ChunkResult from its own timing (child-side clock, load time excluded)."""
        timing = getattr(value, "timing", None)
        if timing is not None:
            self.record(len(value), max(0.0, timing.finished - timing.started - timing.load_s))

    @property
    def median(self) -> float | None:
        return statistics.median(self._per_image) if self._per_image else None

    def limit(self, n_images: int, loading: bool = False) -> float | None:
        """Seconds a chunk of ``n_images`` may run (None = no limit); ``loading``: it loads the model first."""
        p = self.policy
        if not p.auto:
            return None if p.fixed is None else p.fixed + (p.load_allowance if loading else 0.0)
        med = self.median
        base = FIRST_FACTOR * p.floor if med is None else max(p.floor, FACTOR * med * max(1, n_images))
        return base + (p.load_allowance if loading else 0.0)
