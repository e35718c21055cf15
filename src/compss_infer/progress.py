"""Progress for humans: a tqdm bar on a terminal, a plain log line every few seconds otherwise."""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO


class Progress:
    """Counts images done; draws a bar (tty) or prints periodic lines (logs, batch jobs)."""

    def __init__(self, total: int, done: int = 0, enabled: bool = True, stream: TextIO | None = None,
                 every: float = 10.0):
        self.total = total
        self.done = done
        self.failed = 0
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._every = every
        self._t0 = time.monotonic()
        self._start_done = done
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
        if self._bar is not None:
            self._bar.update(n)
            if failed:
                self._bar.set_postfix(failed=self.failed, refresh=False)
        else:
            self.tick()

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
            if self._bar is not None:
                self._bar.write(text, file=self._stream)
            else:
                self._stream.write(text + "\n")
                self._stream.flush()
        elif self._bar is None:
            self._last = now
            self._line()

    def _line(self) -> None:
        elapsed = max(1e-9, time.monotonic() - self._t0)
        rate = (self.done - self._start_done) / elapsed
        left = self.total - self.done
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        self._stream.write(f"compss-infer: {self.done}/{self.total} images ({pct:.1f}%), "
                           f"{rate:.0f} img/s, {self.failed} failed, ETA {eta}\n")
        self._stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._enabled and self.done > self._start_done:
            self._line()
