"""The master's dispatch loop: keep a bounded window of chunks in flight, journal what finishes,
and recover failed chunks by retrying and splitting them, whatever the engine.

Recovery policy (``next_attempts``): a chunk that fails (its worker died, hung past the timeout,
or the task raised) is re-run whole once, since most failures are not the chunk's fault (a worker
OOM-killed for its neighbour's sake).  If it fails again it is split in halves, and halves split
again on their first failure, down to single images; a single image is retried ``max_retries``
times and then given up as an error row ``TaskFailed: ...``.  So a poison image costs only its
own row, and every input image ends up in the results exactly once.

An engine may ask for a task to be rerun whole after a pause (``Outcome.retry_after``: the COMPSs
engine does when a node could not load the model for a moment); that retry is not counted against
the task's images.  ``ScheduleStats.retries_by_cause`` counts every rerun (whole, split or paused)
by the kind of failure that caused it.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..core.contracts import ChunkResult, WorkerSpec
from ..engines.base import Engine
from ..images.shards import SHARD_REFS
from .inputs import Chunk, Lines
from .journal import Journal, Record
from .progress import Progress
from .rows import ChunkRows, RowFormat, classify_rows, format_chunk

log = logging.getLogger("compss_infer")


@dataclass
class Task:
    """A range of images to classify, and its failure history."""

    start: int
    paths: Any  # inputs.Lines (the plan's bytes), or a tuple of absolute paths
    attempts: int = 0  # failed attempts so far
    split: bool = False  # came from splitting: split again at the first failure
    failures: list[str] = field(default_factory=list)


def next_attempts(task: Task, failure: str, max_retries: int) -> list[Task] | None:
    """What to run after ``task`` failed; None = give up (only ever for a single image)."""
    history = task.failures + [failure]
    attempts = task.attempts + 1
    n = len(task.paths)
    if n == 1:
        if attempts <= max_retries:
            return [Task(task.start, task.paths, attempts, task.split, history)]
        return None
    if not task.split and attempts == 1 and max_retries > 0:
        return [Task(task.start, task.paths, attempts, False, history)]
    half = n // 2
    return [Task(task.start, task.paths[:half], 0, True, history),
            Task(task.start + half, task.paths[half:], 0, True, history)]


def give_up_text(task: Task, failure: str) -> str:
    reason = failure.split(": ", 1)[1] if ": " in failure else failure
    return f"TaskFailed: {reason} (gave up after {task.attempts + 1} attempts)"


@dataclass
class ScheduleStats:
    tasks_done: int = 0
    tasks_failed: int = 0
    images_done: int = 0
    images_given_up: int = 0
    first_result_at: float | None = None  # time.monotonic()
    retries_by_cause: Counter = field(default_factory=Counter)  # failure kind -> tasks rerun after it


class Scheduler:
    """Feeds an engine from an ordered chunk iterator and journals every finished range."""

    def __init__(self, engine: Engine, spec: WorkerSpec, journal: Journal, progress: Progress,
                 task_fn: Callable[..., Any], max_retries: int, window: int,
                 row_format: RowFormat | None = None,
                 on_record: Callable[[int, int, int], None] | None = None):
        self.engine = engine
        self.row_format = row_format or RowFormat()
        # rows are formatted where the chunk runs, except on COMPSs, whose task returns a ChunkResult
        self.rows_in_worker = getattr(engine, "name", "") != "compss"
        self.spec = spec
        self.journal = journal
        self.progress = progress
        self.task_fn = task_fn
        self.max_retries = max_retries
        self.window = max(1, window)
        self.stats = ScheduleStats()
        self.on_record = on_record  # (start, count, journal offset) of each journaled range
        self._inflight: dict[int, Task] = {}
        self._retry: deque[Task] = deque()
        self._later: list[tuple[float, int, Task]] = []  # (not before, tie-break, task): paused retries
        self._ties = itertools.count()
        self._next_key = 0

    def _submit(self, task: Task) -> None:
        key = self._next_key
        self._next_key += 1
        self._inflight[key] = task
        if isinstance(task.paths, (Lines, *SHARD_REFS)) and self.rows_in_worker:
            self.engine.submit(key, classify_rows, self.task_fn, self.spec, self.row_format, task.paths)
        elif isinstance(task.paths, SHARD_REFS):  # COMPSs: a task gets the shard slice itself
            self.engine.submit(key, self.task_fn, self.spec, task.paths)
        else:
            self.engine.submit(key, self.task_fn, self.spec, list(task.paths))

    def run(self, chunks: Iterator[Chunk]) -> ScheduleStats:
        more = True
        while True:
            while self._later and self._later[0][0] <= time.monotonic():
                self._retry.append(heapq.heappop(self._later)[2])
            while len(self._inflight) < self.window and (self._retry or more):
                if self._retry:
                    self._submit(self._retry.popleft())
                    continue
                chunk = next(chunks, None)
                if chunk is None:
                    more = False
                    break
                self._submit(Task(chunk.start, chunk.paths))
            if not self._inflight:
                if not self._later:
                    return self.stats
                time.sleep(max(0.0, min(0.5, self._later[0][0] - time.monotonic())))
                self.progress.tick(self._waiting_on)
                continue
            for outcome in self.engine.poll(0.5):
                task = self._inflight.pop(outcome.key)
                value = outcome.value
                if outcome.failure is None and isinstance(value, ChunkResult) and len(value) == len(task.paths):
                    listed = value.listed if isinstance(task.paths, SHARD_REFS) else self._listed(task)
                    value = format_chunk(value, listed or [], self.row_format)
                if outcome.failure is None and isinstance(value, ChunkRows) and value.count == len(task.paths):
                    self._record(task, value)
                elif outcome.failure is not None and outcome.retry_after is not None:
                    self._pause(task, outcome.failure, outcome.retry_after)
                else:
                    failure = outcome.failure or "TaskFailed: the task returned no result"
                    self._failed(task, failure)
            self.progress.tick(self._waiting_on)

    def _waiting_on(self) -> str | None:
        """The longest-running chunk and its worker, for the progress line of a stalled run."""
        running = getattr(self.engine, "running", None)
        busy = [r for r in (running() if running else []) if r[0] in self._inflight]
        if not busy:
            return None
        key, worker, seconds, limit = max(busy, key=lambda r: r[2])
        task = self._inflight[key]
        left = f", limit {limit:.0f}s" if limit else ", no time limit"
        return (f"chunk at image {task.start} ({len(task.paths)} images) on {worker}, "
                f"running {seconds:.0f}s{left}")

    @staticmethod
    def _listed(task: Task) -> list[str]:
        return task.paths.listed() if isinstance(task.paths, (Lines, *SHARD_REFS)) else list(task.paths)

    def _record(self, task: Task, result: ChunkRows) -> None:
        offset = self.journal.append(Record.from_rows(task.start, result, task.attempts + 1))
        if self.on_record is not None:
            self.on_record(task.start, len(task.paths), offset)
        self.stats.tasks_done += 1
        self.stats.images_done += len(task.paths)
        if self.stats.first_result_at is None:
            self.stats.first_result_at = time.monotonic()
        self.progress.update(len(task.paths), failed=len(result.errors))

    def _pause(self, task: Task, failure: str, seconds: float) -> None:
        """Rerun ``task`` whole, unchanged, no sooner than ``seconds`` from now."""
        self.stats.tasks_failed += 1
        self.stats.retries_by_cause[_kind(failure)] += 1
        heapq.heappush(self._later, (time.monotonic() + seconds, next(self._ties), task))

    def _failed(self, task: Task, failure: str) -> None:
        self.stats.tasks_failed += 1
        follow = next_attempts(task, failure, self.max_retries)
        if follow is not None:
            self.stats.retries_by_cause[_kind(failure)] += 1
        if follow is None:
            text = give_up_text(task, failure)
            log.warning("image %d given up: %s", task.start, text)
            self.stats.images_given_up += 1
            self._record(task, format_chunk(ChunkResult.all_failed(len(task.paths), text), self._listed(task),
                                            self.row_format))
            return
        if len(follow) == 2:
            log.warning("chunk at image %d (%d images) failed again (%s); splitting it",
                        task.start, len(task.paths), failure)
        else:
            log.warning("task at image %d (%d images) failed (%s); retrying",
                        task.start, len(task.paths), failure)
        self._retry.extendleft(reversed(follow))


def _kind(failure: str) -> str:
    """The kind of a failure text ``Kind: reason``."""
    kind = failure.split(":", 1)[0].strip()
    return kind if kind and " " not in kind else "Other"
