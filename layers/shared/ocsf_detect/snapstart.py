"""Lambda SnapStart: the bundle loads before the snapshot, randomness is renewed after restore.

With SnapStart, Lambda runs a version's init once, snapshots the memory and resumes every
new execution environment from that snapshot. A bundle loaded during init is then already
in memory when an environment starts; but every environment resumed from one snapshot
would also share the state of the random generators, so they are re-seeded from the
operating system after each restore. The runtime's ``snapshot_restore_py`` registers the
hook; outside Lambda (tests, local tools) it is absent and nothing is registered.

    if settings.load_at_init:
        prepare_snapshot(get_detector)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any


def reseed() -> None:
    """Fresh seeds, from os.urandom, for Python's and numpy's global generators."""
    import numpy as np

    random.seed()
    np.random.seed()  # the legacy global generator: the one a library may draw from


def register_after_restore(hook: Callable[[], Any]) -> bool:
    """Run ``hook`` after every restore from a snapshot; False where there is no SnapStart."""
    try:
        from snapshot_restore_py import register_after_restore as register
    except ImportError:
        return False
    register(hook)
    return True


def prepare_snapshot(load: Callable[[], Any]) -> bool:
    """Load now (init, before the snapshot) and re-seed after each restore."""
    load()
    return register_after_restore(reseed)
