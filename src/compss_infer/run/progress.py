"""Progress for humans: a tqdm bar on a terminal, a plain log line every few seconds otherwise.

Two rates, labelled the same in progress lines, the summary line and the summary file:
``img/s whole process`` (images this run classified / seconds since the command started) and
``img/s after the first result`` (images finished after the first result / seconds since it; left
out while that span is under half a second, so a tiny run shows no noise as a rate).
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

WHOLE = "img/s whole process"
AFTER_FIRST = "img/s after the first result"
MIN_WINDOW_S = 0.5  # a shorter span after the first result measures noise: no rate is shown for it


def format_rate(rate: float) -> str:
    """``5,383`` / ``12.5`` / ``0.42``: never "0" for a slow or tiny run."""
    if rate >= 100:
        return f"{rate:,.0f}"
    if rate >= 1:
        return f"{rate:.1f}"
    return f"{rate:.2g}"


def rates_text(whole: float | None, after_first: float | None) -> str:
    """``12.5 img/s whole process, 480 img/s after the first result`` (parts without a value left out)."""
    parts = []
    if whole is not None and whole > 0:
        parts.append(f"{format_rate(whole)} {WHOLE}")
    if after_first is not None and after_first > 0:
        parts.append(f"{format_rate(after_first)} {AFTER_FIRST}")
    return ", ".join(parts)


class Progress:
    """Counts images done; draws a bar (tty) or prints periodic lines (logs, batch jobs)."""

    def __init__(self, total: int, done: int = 0, enabled: bool = True, stream: TextIO | None = None,
                 every: float = 10.0, started: float | None = None):
        self.total = total
        self.done = done
        self.failed = 0
        self._stream = stream or sys.stderr
        self._enabled = enabled and self._stream is not None  # None: started with stderr closed
        self._every = every
        self._t0 = time.monotonic()
        self.started = started if started is not None else self._t0  # the command's start
        self._start_done = done
        self.first_at: float | None = None  # time.monotonic() of the first result
        self.first_done = done  # images done once the first result was in
        self._last = self._t0
        self._last_done_at = self._t0  # when an update last came (a stalled run says so)
        self._bar: Any = None
        if enabled and getattr(self._stream, "isatty", lambda: False)():
            from tqdm import tqdm
            self._bar = tqdm(total=total, initial=done, unit="img", file=self._stream, dynamic_ncols=True,
                             smoothing=0.1, desc="classify")

    def update(self, n: int, failed: int = 0) -> None:
        self.done += n
        self._last_done_at = time.monotonic()
        self.failed += failed
        if self.first_at is None:
            self.first_at = time.monotonic()
            self.first_done = self.done
        if self._bar is not None:
            try:
                self._bar.update(n)
                if failed:
                    self._bar.set_postfix(failed=self.failed, refresh=False)
            except OSError:  # stderr closed: the run goes on without a bar
                self._bar = None
                self._enabled = False
        else:
            self.tick()

    def rates(self, now: float | None = None) -> tuple[float | None, float | None]:
        """(whole process, after the first result) in images/s; None where not measurable yet."""
        now = time.monotonic() if now is None else now
        elapsed = now - self.started
        whole = (self.done - self._start_done) / elapsed if elapsed > 0 and self.done > self._start_done else None
        after = None
        if self.first_at is not None and now - self.first_at >= MIN_WINDOW_S and self.done > self.first_done:
            after = (self.done - self.first_done) / (now - self.first_at)
        return whole, after

    def tick(self, waiting_on: Callable[[], str | None] | None = None) -> None:
        """A periodic line; while nothing finishes, a line naming what the run waits on instead of an ETA."""
        now = time.monotonic()
        if not self._enabled or now - self._last < self._every:
            return
        stalled = now - self._last_done_at >= self._every and waiting_on is not None
        what = waiting_on() if stalled else None
        if what:
            self._last = now
            text = (f"compss-infer: {self.done}/{self.total} images, nothing finished for "
                    f"{now - self._last_done_at:.0f}s; waiting on {what}")
            try:
                if self._bar is not None:
                    self._bar.write(text, file=self._stream)
                else:
                    self._stream.write(text + "\n")
                    self._stream.flush()
            except (OSError, ValueError):  # stderr closed: never let progress end a run
                self._enabled = False
        elif self._bar is None:
            self._last = now
            self._line()

    def _line(self) -> None:
        whole, after = self.rates()
        rate = after or whole
        left = self.total - self.done
        eta = f", ETA {left / rate:.0f}s" if rate and left > 0 else ""
        pct = 100.0 * self.done / self.total if self.total else 100.0
        speed = rates_text(whole, after)
        try:
            self._stream.write(f"compss-infer: {self.done}/{self.total} images ({pct:.1f}%), "
                               f"{self.failed} failed" + (f", {speed}" if speed else "") + f"{eta}\n")
            self._stream.flush()
        except (OSError, ValueError):  # stderr closed: never let progress end a run
            self._enabled = False

    def close(self) -> None:
        if self._bar is not None:
            try:
                self._bar.close()
            except OSError:
                pass
        elif self._enabled and self.done > self._start_done:
            self._line()
