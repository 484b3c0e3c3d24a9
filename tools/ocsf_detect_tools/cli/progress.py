"""A dependency-free progress line for long CLI runs (stderr, only on a terminal)."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO


class Progress:
    """``with Progress("scoring", total=n) as p: p.advance(k)``.

    Draws ``label [#####.....] done/total  rate/s`` on stderr at most 10 times a second,
    and nothing when stderr is not a terminal (CI logs stay clean) unless ``force``.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        force: bool = False,
        unit: str = "ev",
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = stream or sys.stderr
        self._enabled = force or self._stream.isatty()
        self._start = time.perf_counter()
        self._last_draw = 0.0

    def __enter__(self) -> Progress:
        self._start = time.perf_counter()
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self._enabled and now - self._last_draw >= 0.1:
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float, end: str = "") -> None:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30) + "." * (30 - int(frac * 30))
            text = f"\r{self.label} [{bar}] {self.done:,}/{self.total:,}  {rate:,.0f} {self.unit}/s"
        else:
            text = f"\r{self.label} {self.done:,}  {rate:,.0f} {self.unit}/s"
        self._stream.write(text + end)
        self._stream.flush()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._enabled:
            self._draw(time.perf_counter(), end="\n")
