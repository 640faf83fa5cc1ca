"""Progress lines for long work: `label: done/total unit (pct), rate, ETA` at a steady rhythm.

Why: a step that runs for minutes must say where it is, in the UI's run log and on the terminal of
`mmoral materialize`. Every line starts with `PROGRESS_MARK`, so the command's console logger
(`defs/console.py`) shows these lines while hiding the rest of the INFO chatter. No Dagster import:
the SFT trainer reports through Dagster Pipes with the same class.

Two ways to report:
- explicitly: `p = Progress("sft", total, log); p.advance()` where the loop is yours;
- ambiently, where the loop is deep in shared code (readers, backends, writers): the asset opens
  `with reporting(Progress(...)):` and the loop calls `tick()`, which does nothing when no one listens.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

PROGRESS_MARK = "[progress]"


def default_every_s() -> float:
    """Seconds between two lines of one task (`MMORAL_PROGRESS_EVERY_S`, default 10)."""
    return float(os.environ.get("MMORAL_PROGRESS_EVERY_S", "10"))


def duration(seconds: float) -> str:
    """12 s / 3 min 05 s / 1 h 02 min."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """Counts work done against a total and logs a line when `every_s` has passed (and at the end).

    `counts` are extra tallies shown beside the rate (cache hits, rejections); `details` returns
    more text for each line (the SFT loss). Thread-safe: backends report from their callbacks.
    """

    def __init__(
        self,
        label: str,
        total: int | None,
        log: Callable[[str], None],
        *,
        unit: str = "items",
        every_s: float | None = None,
        details: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.label, self.total, self.unit, self.log, self.details = label, total, unit, log, details
        self.every_s = default_every_s() if every_s is None else every_s
        self.clock = clock
        self.done = 0
        self.counts: dict[str, int] = {}
        self.lines = 0
        self._start = self._last = clock()
        self._lock = threading.Lock()

    def start(self) -> Progress:
        """Log the opening line (what is about to happen, and how much of it)."""
        self._emit(self.line(start=True))
        return self

    def advance(self, n: int = 1, **counts: int) -> None:
        with self._lock:
            self.done += n
            for k, v in counts.items():
                self.counts[k] = self.counts.get(k, 0) + v
            now = self.clock()
            if now - self._last < self.every_s or (self.total is not None and self.done >= self.total):
                return  # the closing line (finish) reports completion
            self._last = now
            text = self.line()
        self._emit(text)

    def note(self, **counts: int) -> None:
        """Count work that is not the unit (validating what the requests returned): the rhythm goes on."""
        with self._lock:
            for k, v in counts.items():
                self.counts[k] = self.counts.get(k, 0) + v
            now = self.clock()
            if now - self._last < self.every_s:
                return
            self._last = now
            text = self.line()
        self._emit(text)

    def finish(self) -> None:
        with self._lock:
            text = self.line(final=True)
        self._emit(text)

    def rate(self) -> float:
        elapsed = self.clock() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self, *, start: bool = False, final: bool = False) -> str:
        total = f"/{self.total:,}" if self.total is not None else ""
        if start:
            return (
                f"{PROGRESS_MARK} {self.label}: starting, {self.total if self.total is not None else '?'} {self.unit}"
            )
        elapsed = self.clock() - self._start
        parts = [f"{self.done:,}{total} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f} %)"
        rate = self.rate()
        parts.append(f"{rate:,.1f} {self.unit}/s")
        if final:
            parts.append(f"done in {duration(elapsed)}")
        elif self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {duration(max(0, self.total - self.done) / rate)}")
        parts += [f"{k.replace('_', ' ')} {v:,}" for k, v in self.counts.items()]
        if self.details is not None:
            extra = self.details()
            if extra:
                parts.append(extra)
        return f"{PROGRESS_MARK} {self.label}: " + ", ".join(parts)

    def _emit(self, text: str) -> None:
        self.lines += 1
        self.log(text)


_CURRENT: ContextVar[Progress | None] = ContextVar("mmoral_progress", default=None)


def current() -> Progress | None:
    """The progress being reported in this context (capture it before handing work to other threads)."""
    return _CURRENT.get()


@contextmanager
def reporting(progress: Progress) -> Iterator[Progress]:
    """Make `progress` the one `tick()` reports to; logs the opening line, and the closing one on success."""
    token = _CURRENT.set(progress.start())
    try:
        yield progress
    finally:
        _CURRENT.reset(token)
    progress.finish()


def tick(n: int = 1, **counts: int) -> None:
    """Report `n` units done to the progress of this context, if any."""
    p = _CURRENT.get()
    if p is not None:
        p.advance(n, **counts)


def note(**counts: int) -> None:
    """Report other work (not the unit) to the progress of this context, if any: it keeps the lines coming."""
    p = _CURRENT.get()
    if p is not None:
        p.note(**counts)
