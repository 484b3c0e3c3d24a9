"""Pause the cyclic garbage collector around allocation-heavy batch loops.

Decoding a batch allocates many small dicts and tuples, none of which form reference
cycles; with the collector on, its generation-0 passes cost more than the decoding
itself (measured: ~55k vs ~85k events/s). Reference counting still frees everything.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Pauses:
    """Pauses in progress across threads (the collector is process-wide) and whether
    the collector was on when the first of them began."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.resume = False

    def enter(self) -> None:
        with self.lock:
            if self.active == 0:
                self.resume = gc.isenabled()
                gc.disable()
            self.active += 1

    def leave(self) -> None:
        with self.lock:
            self.active -= 1
            if self.active == 0 and self.resume:
                gc.enable()


_PAUSES = _Pauses()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Collector off inside; back to its previous state when the last pause in the
    process ends (nested or concurrent pauses in other threads keep it off until then)."""
    _PAUSES.enter()
    try:
        yield
    finally:
        _PAUSES.leave()


def freeze_long_lived() -> None:
    """Move everything alive now (modules, the loaded bundle) out of the collector's sight.

    Call once per container, after the cold start's loading. A full collection walks every
    tracked object; without this, the occasional one during a request walks the whole
    bundle too (measured on a 1,000-event API batch: ~60 ms typical, ~100 ms with it)."""
    gc.collect()
    gc.freeze()
