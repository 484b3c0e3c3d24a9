"""The collector pause: nested and concurrent pauses restore the collector only at the end."""

from __future__ import annotations

import gc
import threading

from ocsf_detect.gcpause import gc_paused


def test_nested_pauses_restore_the_collector_at_the_end() -> None:
    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_pause_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_thread_leaving_its_pause_does_not_end_another_threads_pause() -> None:
    inside = threading.Event()
    release = threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=other)
    with gc_paused():
        worker.start()
        assert inside.wait(5)
    assert not gc.isenabled()  # the other thread is still inside its pause
    release.set()
    worker.join(5)
    assert gc.isenabled()
