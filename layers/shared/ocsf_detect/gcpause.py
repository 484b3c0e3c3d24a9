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


def freeze_long_lived() -> None:
    """Move everything alive now (modules, the loaded bundle) out of the collector's sight.

    Call once per container, after the cold start's loading. A full collection walks every
    tracked object; without this, the occasional one during a request walks the whole
    bundle too (measured on a 1,000-event API batch: ~60 ms typical, ~100 ms with it)."""
    gc.collect()
    gc.freeze()
