"""Pause the cyclic garbage collector around allocation-heavy batch loops.

Decoding a batch allocates many small dicts and tuples, none of which form reference
cycles; with the collector on, its generation-0 passes cost more than the decoding
itself (measured: ~55k vs ~85k events/s). Reference counting still frees everything.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
