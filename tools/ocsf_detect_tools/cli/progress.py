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


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class TrainingProgress:
    """The step observer of ``training.fit.observe_training``.

    On a terminal, per class: ``label [#####.....] step/total steps  loss L  elapsed E,
    ETA T``, redrawn at most 10 times a second. Elsewhere (a log, CI), one line when a
    class starts training, with its planned steps and time bound. ``max_seconds`` caps
    the ETA, as it caps training.
    """

    def __init__(
        self,
        max_seconds: float | None = None,
        *,
        stream: TextIO | None = None,
        force: bool = False,
    ) -> None:
        self.label = "training"
        self.max_seconds = max_seconds
        self._stream = stream or sys.stderr
        self._tty = force or self._stream.isatty()
        self._last_draw = 0.0
        self._open_line = False

    def __call__(self, step: int, total: int, loss: float, elapsed: float) -> None:
        if step == 1 and not self._tty:
            bound = f", at most {_duration(self.max_seconds)}" if self.max_seconds else ""
            self._stream.write(f"  {self.label}: training {total:,} steps{bound}\n")
            self._stream.flush()
        if not self._tty:
            return
        now = time.perf_counter()
        if step not in (1, total) and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        left = elapsed / step * (total - step)
        if self.max_seconds is not None:
            left = min(left, max(0.0, self.max_seconds - elapsed))
        frac = step / total
        bar = "#" * int(frac * 30) + "." * (30 - int(frac * 30))
        self._stream.write(
            f"\r  {self.label} [{bar}] {step:,}/{total:,} steps  loss {loss:.4f}  "
            f"elapsed {_duration(elapsed)}, ETA {_duration(left)} "
        )
        self._open_line = step != total
        if step == total:
            self._stream.write("\n")
        self._stream.flush()

    def end_line(self) -> None:
        """End a progress line left open (training stopped before its last step)."""
        if self._open_line:
            self._stream.write("\n")
            self._stream.flush()
            self._open_line = False
