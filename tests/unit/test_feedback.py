"""Feedback that changes the detector: the overlay of judged-benign embeddings (scorer),
its reader (``OverlaySource``, against an in-memory store), and explanations."""

from __future__ import annotations

import contextvars
import copy
import re
import threading
import time
import uuid
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from ocsf_detect.detector.explain import MIN_DEVIATION
from ocsf_detect.detector.overlay import FeedbackOverlay, Judged
from ocsf_detect.detector.scorer import Detector, Scored
from ocsf_detect.feedback import OverlaySource, Verdict, overlay_key, overlay_prefix
from ocsf_detect.findings import build_finding, fit_finding


@pytest.fixture(scope="module")
def fresh(bundle_dir: Path) -> Detector:
    """A detector of its own: the overlay is state, the session's detector is shared."""
    return Detector.load(bundle_dir)


@pytest.fixture(scope="module")
def alerts(fresh: Detector, live_traffic) -> list[tuple[Scored, str]]:
    """The live traffic's anomalies of class 4001, with their generator labels."""
    outcomes = fresh.score_objects(live_traffic.events)
    return [
        (o, label.attack_type)
        for o, label in zip(outcomes, live_traffic.labels, strict=True)
        if isinstance(o, Scored) and o.is_anomaly and o.class_uid == 4001
    ]


def near_duplicates(event: dict[str, Any], n: int = 6) -> list[dict[str, Any]]:
    """Copies of ``event`` as the same behaviour would repeat: another source port, a few
    minutes later, a few percent more or fewer bytes, a new uid."""
    out = []
    for i in range(n):
        e = copy.deepcopy(event)
        e["metadata"]["uid"] = str(uuid.UUID(int=i + 1))
        e["time"] = event["time"] + (i + 1) * 60_000
        if isinstance(e.get("src_endpoint"), dict) and "port" in e["src_endpoint"]:
            e["src_endpoint"]["port"] = 40_000 + 97 * i
        traffic = e.get("traffic") or {}
        for key in ("bytes_in", "bytes_out"):
            if isinstance(traffic.get(key), int):
                traffic[key] = int(traffic[key] * (1.0 + 0.02 * ((-1) ** i)))
        out.append(e)
    return out


def test_a_benign_verdict_silences_near_duplicates_and_no_other_anomaly(
    fresh: Detector, alerts: list[tuple[Scored, str]]
) -> None:
    # Given a false positive (an anomaly the generator labels benign) and the port scan's
    # anomalies, all alerting with the bundle alone
    # (one whose near-duplicates alert too: a false positive that would keep recurring)
    # (of those, the one farthest from every scan: a verdict on a benign event that
    # looks like the scan may rightly silence it too)
    scans = [s for s, kind in alerts if kind == "port_scan"]
    assert scans, "the live traffic's port scan should alert"
    scan_vectors = np.stack([j.vector for j in fresh.judge_objects([s.event for s in scans])])  # type: ignore[union-attr]
    recurring = []
    for candidate, kind in alerts:
        if kind != "benign":
            continue
        copies = near_duplicates(candidate.event)
        before = fresh.score_objects([candidate.event, *copies, *(s.event for s in scans)])
        copies_alerting = sum(o.is_anomaly for o in before[1 : 1 + len(copies)])  # type: ignore[union-attr]
        if copies_alerting >= len(copies) - 1:
            vector = fresh.judge_objects([candidate.event])[0].vector  # type: ignore[union-attr]
            apart = float(np.linalg.norm(scan_vectors - vector, axis=1).min())
            recurring.append((apart, candidate, copies, before, copies_alerting))
    if not recurring:
        pytest.fail("no false positive of the live traffic recurs as its near-duplicates")
    _, judged, copies, before, copies_alerting = max(recurring, key=lambda r: r[0])
    assert all(isinstance(o, Scored) for o in before)
    assert before[0].is_anomaly  # type: ignore[union-attr]

    # When an analyst judges it benign: the event joins the overlay
    kept = fresh.judge_objects([judged.event])[0]
    assert isinstance(kept, Judged)
    assert kept.row is not None  # (the default's fine view measures the feature space)
    fresh.use_overlay(FeedbackOverlay.of(fresh.bundle_version, [kept]))
    silenced_before = fresh.silenced
    try:
        after = fresh.score_objects([judged.event, *copies, *(s.event for s in scans)])
    finally:
        fresh.use_overlay(None)

    # Then the event and its near-duplicates no longer alert, and each silenced one counts
    assert not any(o.is_anomaly for o in after[: 1 + len(copies)])  # type: ignore[union-attr]
    assert fresh.silenced - silenced_before >= 1 + copies_alerting
    # ...while the port scan alerts exactly as before
    scan_before = [o.score for o in before[1 + len(copies) :]]  # type: ignore[union-attr]
    scan_after = [o.score for o in after[1 + len(copies) :]]  # type: ignore[union-attr]
    assert all(o.is_anomaly for o in after[1 + len(copies) :])  # type: ignore[union-attr]
    assert scan_after == scan_before


def test_the_overlay_only_lowers_scores_and_the_selftest_ignores_it(
    fresh: Detector, live_traffic, alerts: list[tuple[Scored, str]]
) -> None:
    events = [e for e in live_traffic.events if e["class_uid"] == 4001][:300]
    plain = [o.score for o in fresh.score_objects(events)]  # type: ignore[union-attr]
    # (judged: the five highest-scored of these events, so their own scores must fall)
    top = np.argsort(plain)[-5:]
    kept = fresh.judge_objects([events[i] for i in top])
    golden = fresh.selftest()["scores"]
    fresh.use_overlay(FeedbackOverlay.of(fresh.bundle_version, kept))  # type: ignore[arg-type]
    try:
        judged = [o.score for o in fresh.score_objects(events)]  # type: ignore[union-attr]
        assert fresh.selftest()["scores"] == golden
    finally:
        fresh.use_overlay(None)
    assert all(j <= p for j, p in zip(judged, plain, strict=True))
    assert any(j < p for j, p in zip(judged, plain, strict=True))


def test_an_overlay_of_another_bundle_is_refused(fresh: Detector) -> None:
    with pytest.raises(ValueError, match=r"is for bundle 0\.0\.0\+other"):
        fresh.use_overlay(FeedbackOverlay("0.0.0+other", {}))


# --- the overlay's reader ------------------------------------------------------------------
class MemoryStore:
    """The reads of ``S3FeedbackStore``, in memory (keys -> JSON bodies)."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[str, float, Any]] = {}
        self.reads = 0
        self.listed = 0
        self.pages = 0
        self.fail = False

    def put(self, key: str, body: Any, etag: str = "e1", modified: float = 0.0) -> None:
        self.objects[key] = (etag, modified, body)

    page_size = 1000

    def list_pages(self, prefix: str, start_after: str | None = None):
        if self.fail:
            raise ConnectionError("S3 is unreachable")
        items = [
            (key, etag, modified)
            for key, (etag, modified, _) in sorted(self.objects.items())
            if key.startswith(prefix) and (start_after is None or key > start_after)
        ]
        for at in range(0, len(items), self.page_size):
            page = items[at : at + self.page_size]
            self.listed += len(page)
            self.pages += 1
            yield page

    def read_json(self, key: str) -> Any:
        self.reads += 1
        return self.objects[key][2]


def test_the_overlay_source_refreshes_on_its_interval_and_survives_failures() -> None:
    store = MemoryStore()
    now = [0.0]
    source = OverlaySource(store, "1.0.0+abc", {4001: 3}, 60.0, clock=lambda: now[0])  # type: ignore[arg-type]
    store.put(overlay_key("1.0.0+abc", 4001, "f1"), {"vector": [0.0, 1.0, 2.0]}, modified=1)
    store.put(overlay_key("1.0.0+abc", 4001, "f2"), {"vector": [1.0, 1.0]})  # other model
    store.put(overlay_key("1.0.0+abc", 9999, "f3"), {"vector": [1.0, 1.0, 1.0]})  # no model
    store.put(overlay_key("0.9.0+old", 4001, "f4"), {"vector": [5.0, 5.0, 5.0]})  # old bundle
    assert source.current().count(4001) == 1
    assert source.current().total == 1

    # A vector added later is seen only after the interval; known ones are not re-read
    store.put(overlay_key("1.0.0+abc", 4001, "f5"), {"vector": [3.0, 3.0, 3.0]}, modified=2)
    reads = store.reads
    now[0] = 30.0
    assert source.current().count(4001) == 1
    now[0] = 61.0
    overlay = source.current()
    assert overlay.count(4001) == 2
    assert store.reads == reads + 1
    d = overlay.nearest(4001, np.array([[3.0, 3.0, 3.1]], dtype=np.float32))
    assert d is not None
    assert d[0] == pytest.approx(0.1, abs=1e-5)

    # A failed refresh keeps the last overlay and says why
    store.fail = True
    now[0] = 130.0
    assert source.current().count(4001) == 2
    assert source.last_error
    assert "unreachable" in source.last_error
    # A removed vector (a later malicious verdict) leaves at the next refresh
    store.fail = False
    del store.objects[overlay_key("1.0.0+abc", 4001, "f1")]
    source.invalidate()
    assert source.current().count(4001) == 1
    assert overlay_prefix("1.0.0+abc").endswith("overlay/1.0.0+abc/")


def test_a_refresh_reads_for_its_budget_newest_first_and_the_next_call_reads_on() -> None:
    # Given 10 new vectors, each read taking 0.3 s, and a fetch budget of 1 s
    now = [0.0]

    class SlowStore(MemoryStore):
        def read_json(self, key: str) -> Any:
            now[0] += 0.3
            return super().read_json(key)

    store = SlowStore()
    for i in range(10):
        store.put(overlay_key("1.0.0+abc", 4001, f"f{i}"), {"vector": [i, 0, 0]}, modified=i)
    source = OverlaySource(store, "1.0.0+abc", {4001: 3}, 60.0, clock=lambda: now[0])  # type: ignore[arg-type]
    # When a scoring call asks for the overlay
    first = source.current()
    # Then it reads for about its budget (4 reads started within 1 s), the newest first,
    # and serves those
    assert first.count(4001) == 4
    newest = np.array([[9.0, 0, 0], [6.0, 0, 0]], dtype=np.float32)
    assert np.allclose(first.nearest(4001, newest), 0.0)
    # and the next call, not the next interval, reads on until every vector is in
    seen = [first.count(4001)]
    while seen[-1] < 10:
        seen.append(source.current().count(4001))
    assert seen == [4, 8, 10]
    assert store.reads == 10  # none read twice
    assert source.last_error is None


class PagedStore(MemoryStore):
    """Listing a page of 100 keys takes 0.3 s of a fake clock; reads take none."""

    page_size = 100

    def __init__(self, now: list[float]) -> None:
        super().__init__()
        self.now = now
        self.fail_after_pages: int | None = None

    def list_pages(self, prefix: str, start_after: str | None = None):
        for page in super().list_pages(prefix, start_after):
            if self.fail_after_pages is not None and self.pages > self.fail_after_pages:
                raise ConnectionError("S3 stopped answering")
            self.now[0] += 0.3
            yield page


def _paged_overlay(n: int) -> tuple[PagedStore, list[str], list[float], OverlaySource]:
    now = [0.0]
    store = PagedStore(now)
    keys = [overlay_key("1.0.0+abc", 4001, f"f{i:04d}") for i in range(n)]
    for i, key in enumerate(keys):
        store.put(key, {"vector": [i, 0, 0]}, modified=i)
    source = OverlaySource(store, "1.0.0+abc", {4001: 3}, 60.0, clock=lambda: now[0])  # type: ignore[arg-type]
    return store, keys, now, source


def test_a_large_overlay_is_listed_over_several_calls_each_within_the_budget() -> None:
    # Given 1,000 vectors in 10 pages, a page taking 0.3 s, and a budget of 1 s a call
    store, keys, now, source = _paged_overlay(1000)
    # When scoring calls ask for the overlay, each lists for about its budget (the check
    # comes between pages: at most one page past it)
    counts, spent = [], []
    while not counts or counts[-1] < 1000:
        start = now[0]
        counts.append(source.current().count(4001))
        spent.append(now[0] - start)
        assert len(counts) < 10
    # Then each lists on where the last stopped, and the one that ends the sweep reads
    # every vector; no page was listed twice
    assert counts == [0, 0, 1000]
    assert max(spent) <= 1.0 + 0.3 + 1e-9
    assert store.pages == 10
    # A vector removed since (a later malicious verdict) leaves once a sweep passes it,
    # and one the sweep has not reached yet stays until it does
    del store.objects[keys[10]]
    del store.objects[keys[900]]
    source.invalidate()
    assert source.current().count(4001) == 999  # cut short: keys[900] not reached yet
    assert [source.current().count(4001) for _ in range(2)] == [999, 998]
    assert source.last_error is None


def test_a_listing_that_fails_midway_forgets_what_it_listed() -> None:
    # Given an overlay read whole, then a sweep whose listing fails after 3 pages
    store, keys, _, source = _paged_overlay(500)
    while source.current().count(4001) < 500:
        pass
    store.pages, store.fail_after_pages = 0, 3
    source.invalidate()
    assert source.current().count(4001) == 500
    assert source.last_error is not None
    assert "stopped answering" in source.last_error
    # When a vector listed by the failed attempt is removed, and S3 answers again
    del store.objects[keys[5]]
    store.fail_after_pages = None
    source.invalidate()
    counts = [source.current().count(4001) for _ in range(3)]
    # Then the next sweep does not take the failed attempt's listing for its own: the
    # vector leaves
    assert counts[-1] == 499


def test_a_sweep_read_in_part_is_read_on_before_a_new_sweep() -> None:
    # Given 300 new vectors listed in one call (3 pages, 0.9 s), each read taking 0.1 s
    store, _, now, source = _paged_overlay(300)

    def slow_read(key: str) -> Any:
        now[0] += 0.1
        return MemoryStore.read_json(store, key)

    store.read_json = slow_read  # type: ignore[method-assign]
    counts = []
    while not counts or counts[-1] < 300:
        counts.append(source.current().count(4001))
        assert len(counts) < 40
    # Then the first call lists for most of its budget and reads what is left of it, and
    # the calls after it read on for their whole budget (about 10 reads) without listing
    assert store.pages == 3
    assert 1 <= counts[0] <= 2
    assert all(9 <= b - a <= 11 for a, b in pairwise(counts[:-1]))


REQUEST = contextvars.ContextVar("request", default=None)


class GatheredStore(MemoryStore):
    """Each read waits until ``gather`` reads are under way at once (a barrier), and
    records the caller's context variable it runs with."""

    def __init__(self, gather: int, timeout: float = 5.0) -> None:
        super().__init__()
        self.barrier = threading.Barrier(gather, timeout=timeout)
        self.seen: list[Any] = []

    def read_json(self, key: str) -> Any:
        self.barrier.wait()  # raises BrokenBarrierError unless ``gather`` reads overlap
        self.seen.append(REQUEST.get())
        return super().read_json(key)


def _vectors(store: MemoryStore, n: int) -> list[str]:
    keys = [overlay_key("1.0.0+abc", 4001, f"f{i:02d}") for i in range(n)]
    for i, key in enumerate(keys):
        store.put(key, {"vector": [i, 0, 0]}, modified=i)
    return keys


def test_a_cold_refresh_reads_its_objects_at_once_in_the_callers_context() -> None:
    # Given 16 new vectors, each read possible only while 8 reads are under way together
    # (a clock that stands still: the budget never cuts this refresh short)
    store = GatheredStore(gather=8)
    _vectors(store, 16)
    source = OverlaySource(
        store, "1.0.0+abc", {4001: 3}, 60.0, clock=lambda: 0.0, read_concurrency=8
    )  # type: ignore[arg-type]
    # When a request (its id in a context variable, as the API keeps its deadline) asks
    token = REQUEST.set("request-1")
    try:
        overlay = source.current()
    finally:
        REQUEST.reset(token)
    # Then every vector is read in that one call, in two waves of eight, and each read
    # saw the request's context
    assert source.last_error is None
    assert source.caught_up
    assert overlay.count(4001) == 16
    assert store.reads == 16
    assert store.seen == ["request-1"] * 16
    # One read at a time never gets past the first barrier: the refresh fails and keeps
    # the (empty) overlay it had, as any S3 failure does
    alone = GatheredStore(gather=2, timeout=0.5)
    _vectors(alone, 2)
    one_at_a_time = OverlaySource(alone, "1.0.0+abc", {4001: 3}, 60.0, clock=lambda: 0.0)  # type: ignore[arg-type]
    assert one_at_a_time.current().count(4001) == 0
    assert "BrokenBarrierError" in (one_at_a_time.last_error or "")
    assert not one_at_a_time.caught_up


def test_a_refresh_whose_later_wave_fails_keeps_the_last_overlay_and_no_read_outlives_it() -> None:
    # Given 5 vectors read, then 10 more of which one fails to read in the second wave
    store = MemoryStore()
    keys = _vectors(store, 5)
    source = OverlaySource(
        store, "1.0.0+abc", {4001: 3}, 60.0, clock=lambda: 0.0, read_concurrency=4
    )  # type: ignore[arg-type]
    assert source.current().count(4001) == 5
    more = [overlay_key("1.0.0+abc", 4001, f"g{i:02d}") for i in range(10)]
    for i, key in enumerate(more):
        store.put(key, {"vector": [i, 1, 0]}, modified=100 - i)  # read in this order
    failing = more[5]  # the second wave of four
    running: list[str] = []
    ended: list[str] = []

    def read(key: str) -> Any:
        running.append(key)
        if key == failing:
            raise ConnectionError("S3 stopped answering")
        time.sleep(0.05)  # the wave's other reads end after the failure
        ended.append(key)
        return MemoryStore.read_json(store, key)

    store.read_json = read  # type: ignore[method-assign]
    source.invalidate()
    overlay = source.current()
    # Then the first wave's vectors are not kept either: the overlay is the last complete
    # one, the failure is reported, and every read the refresh started had ended when it
    # returned
    assert overlay.count(4001) == 5
    assert "stopped answering" in (source.last_error or "")
    assert not source.caught_up
    assert len(running) == 8
    assert sorted(ended) == sorted(k for k in running if k != failing)
    assert all(key in overlay_keys(source) for key in keys)


def overlay_keys(source: OverlaySource) -> set[str]:
    return set(source._vectors)


def test_objects_that_hold_no_vector_are_set_aside_and_not_read_again() -> None:
    store = MemoryStore()
    _vectors(store, 3)
    gone = overlay_key("1.0.0+abc", 4001, "deleted-since-listed")
    store.put(gone, KeyError("NoSuchKey: the object was deleted"), modified=60)
    bad = {
        "not-json": orjson.JSONDecodeError("unexpected character", "x", 0),
        "a-list": [1, 2, 3],
        "words": {"vector": ["a", "b", "c"]},
        "nested": {"vector": [[1], [2], [3]]},
        "other-model": {"vector": [1.0, 2.0]},
    }
    for name, body in bad.items():
        store.put(overlay_key("1.0.0+abc", 4001, name), body, modified=50)

    def read(key: str) -> Any:
        store.reads += 1
        body = store.objects[key][2]
        if isinstance(body, Exception):
            raise body
        return body

    store.read_json = read  # type: ignore[method-assign]
    source = OverlaySource(
        store, "1.0.0+abc", {4001: 3}, 60.0, clock=lambda: 0.0, read_concurrency=4
    )  # type: ignore[arg-type]
    assert source.current().count(4001) == 3
    assert source.last_error is None
    assert source.caught_up
    reads = store.reads
    source.invalidate()
    assert source.current().count(4001) == 3
    # the set-aside objects are unchanged: not read again; the deleted one is, while it
    # is still listed
    assert store.reads == reads + 1


def test_a_class_measured_in_the_feature_space_takes_only_events_with_their_row() -> None:
    # Given a class whose fine view measures the feature space (2 numeric columns, 1
    # field) beside one that does not, and objects with and without a row of that shape
    store = MemoryStore()
    row = {"numeric": [0.5, 1.5], "codes": [2]}
    bodies = {
        "with-row": {"vector": [1.0, 0, 0], "row": row},
        "no-row": {"vector": [2.0, 0, 0]},
        "short-row": {"vector": [3.0, 0, 0], "row": {"numeric": [0.5], "codes": [2]}},
        "words": {"vector": [4.0, 0, 0], "row": {"numeric": ["a", "b"], "codes": [2]}},
        "not-finite": {"vector": [5.0, 0, 0], "row": {"numeric": [0.5, None], "codes": [2]}},
        "negative-code": {"vector": [7.0, 0, 0], "row": {**row, "codes": [-1]}},
        "code-beyond": {"vector": [8.0, 0, 0], "row": {**row, "codes": [3]}},
        "float-code": {"vector": [9.0, 0, 0], "row": {**row, "codes": [2.0]}},
        "bool-code": {"vector": [10.0, 0, 0], "row": {**row, "codes": [True]}},
        "text-number": {"vector": [11.0, 0, 0], "row": {**row, "numeric": ["0.5", 1.5]}},
        "bool-vector": {"vector": [True, 0, 0], "row": row},
    }
    for name, body in bodies.items():
        store.put(overlay_key("1.0.0+abc", 4001, name), body, modified=1)
    store.put(overlay_key("1.0.0+abc", 4003, "plain"), {"vector": [6.0, 0]}, modified=1)
    source = OverlaySource(
        store,  # type: ignore[arg-type]
        "1.0.0+abc",
        {4001: 3, 4003: 2},
        60.0,
        clock=lambda: 0.0,
        row_shapes={4001: (2, (3,))},
    )
    overlay = source.current()
    # Then the feature-space class holds the event with its row, and its row beside it
    assert overlay.count(4001) == 1
    numeric, codes = overlay.rows[4001]
    assert numeric.tolist() == [[0.5, 1.5]]
    assert codes.tolist() == [[2]]
    assert codes.dtype == np.int32
    # and the other class its vector alone
    assert overlay.count(4003) == 1
    assert 4003 not in overlay.rows
    # A verdict applied here without its row, or with one of another shape, is not taken
    # either (it errs towards alerting)
    verdict = Verdict(
        finding_uid="f-9",
        verdict="benign",
        class_uid=4001,
        event={"class_uid": 4001, "metadata": {"uid": "e-9"}},
        bundle_version="1.0.0+abc",
        received_ms=1,
    )
    source.apply(verdict, Judged(4001, np.array([9.0, 0, 0])))
    assert source.current().count(4001) == 1
    wide = (np.array([1.0, 1.0, 1.0], np.float32), np.array([0], np.int32))
    source.apply(verdict, Judged(4001, np.array([9.0, 0, 0]), wide))
    assert source.current().count(4001) == 1
    with_row = (np.array([1.0, 1.0], np.float32), np.array([0], np.int32))
    source.apply(verdict, Judged(4001, np.array([9.0, 0, 0]), with_row))
    assert source.current().count(4001) == 2
    assert source.current().rows[4001][0].shape == (2, 2)


def test_threads_sharing_a_source_refresh_once_and_a_verdict_applied_meanwhile_stays() -> None:
    # Given a source whose listing holds until released (a slow S3), and one vector there
    store = MemoryStore()
    _vectors(store, 1)
    listing, release = threading.Event(), threading.Event()
    pages = store.list_pages

    def slow_pages(prefix: str, start_after: str | None = None):
        listing.set()
        assert release.wait(5)
        yield from pages(prefix, start_after)

    store.list_pages = slow_pages  # type: ignore[method-assign]
    source = OverlaySource(store, "1.0.0+abc", {4001: 3}, 60.0, clock=lambda: 0.0)  # type: ignore[arg-type]
    # When one thread refreshes, another asks meanwhile and a third applies a verdict
    first = threading.Thread(target=source.current)
    first.start()
    assert listing.wait(5)
    assert source.current().count(4001) == 0  # served at once, not held by the listing
    verdict = Verdict(
        finding_uid="finding-9",
        verdict="benign",
        bundle_version="1.0.0+abc",
        class_uid=4001,
        event={"class_uid": 4001, "metadata": {"uid": "e-9"}},
        received_ms=1,
    )
    applying = threading.Thread(
        target=source.apply, args=(verdict, Judged(4001, np.array([9.0, 9, 9])))
    )
    applying.start()
    release.set()
    first.join(5)
    applying.join(5)
    # Then the store was listed once, and the verdict is in the overlay beside the vector
    # the refresh read, not overwritten by it
    assert store.pages == 1
    assert source.current().count(4001) == 2


def test_the_container_that_takes_a_verdict_applies_it_wherever_the_sweep_is() -> None:
    _, _, _, source = _paged_overlay(1000)
    while source.current().count(4001) < 1000:
        pass
    source.invalidate()
    source.current()  # a new sweep, cut short after its first pages
    assert source._sweep_from is not None
    event = {"class_uid": 4001, "uid": "judged"}

    def verdict(kind: str) -> Verdict:
        return Verdict(
            finding_uid="f-1",
            verdict=kind,
            class_uid=4001,
            event=event,
            bundle_version="1.0.0+abc",
            received_ms=1,
        )

    vector = Judged(4001, np.array([7.5, 0, 0], dtype=np.float32))
    source.apply(verdict("benign"), vector)
    assert source.current().count(4001) == 1001
    source.apply(verdict("malicious"), vector)
    assert source.current().count(4001) == 1000
    # a verdict for another bundle's overlay is not this one's
    other = verdict("benign").model_copy(update={"bundle_version": "0.9.0+old"})
    source.apply(other, vector)
    assert source.current().count(4001) == 1000


def test_a_verdict_keeps_its_event_and_refuses_unknown_verdicts() -> None:
    v = Verdict(
        finding_uid="f-1",
        verdict="malicious",
        class_uid=4001,
        event={"class_uid": 4001},
        bundle_version="1.0.0+abc",
        received_ms=1,
    )
    assert Verdict.model_validate(v.model_dump()) == v
    with pytest.raises(ValueError, match="benign"):
        Verdict.model_validate({**v.model_dump(), "verdict": "unsure"})


# --- explanations -------------------------------------------------------------------------
def test_every_anomaly_of_the_live_traffic_is_explained_in_words(
    alerts: list[tuple[Scored, str]], fresh: Detector
) -> None:
    explained = [s for s, _ in alerts if s.explanation]
    assert len(explained) >= 0.8 * len(alerts)
    for scored in explained:
        reasons = scored.explanation
        assert 1 <= len(reasons) <= 3
        devs = [r.deviation for r in reasons]
        assert devs == sorted(devs, reverse=True)
        assert devs[-1] >= MIN_DEVIATION
        for r in reasons:
            assert r.text.startswith((r.feature, r.path)), r.text


def test_a_huge_transfer_is_explained_by_its_volume_with_the_typical_one(
    fresh: Detector, live_traffic
) -> None:
    # Given ordinary flows whose outbound volume is made enormous (2.1 TB)
    bases = [
        e
        for e in live_traffic.events
        if e["class_uid"] == 4001 and (e.get("traffic") or {}).get("bytes_out", 0) > 1000
    ][:200]
    huge = []
    for base in bases:
        event = copy.deepcopy(base)
        event["traffic"]["bytes_out"] = 2_100_000_000_000
        event["traffic"]["bytes"] = event["traffic"].get("bytes_in", 0) + 2_100_000_000_000
        huge.append(event)
    outcomes = fresh.score_objects(huge)
    alerting = [o for o in outcomes if isinstance(o, Scored) and o.is_anomaly]
    assert alerting, "a 2.1 TB upload should alert for some flows"
    base = bases[outcomes.index(alerting[0])]
    scored = alerting[0]
    # Then one of its reasons is the volume, in bytes, with the baseline's typical value
    texts = [r.text for r in scored.explanation]
    volume = [r for r in scored.explanation if r.path == "traffic.bytes_out"]
    assert volume, texts
    assert "2.1 TB" in volume[0].text
    assert ", typical " in volume[0].text
    assert volume[0].value == pytest.approx(2.1e12, rel=1e-3)
    # And the finding carries the same reasons, in unmapped and in its description
    finding = build_finding(scored, bundle_version="v", created_ms=1)
    assert finding["unmapped"]["explanation"] == [r.as_dict() for r in scored.explanation]
    assert volume[0].text in finding["finding_info"]["desc"]
    # A normal event is not explained
    ordinary = fresh.score_objects([base])[0]
    assert isinstance(ordinary, Scored)
    if not ordinary.is_anomaly:
        assert ordinary.explanation == []


def test_the_overlay_search_is_exact_across_query_blocks() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 8)).astype(np.float32)
    queries = rng.normal(size=(1000, 8)).astype(np.float32)  # several blocks
    found = FeedbackOverlay("v", {1: base}).nearest(1, queries)
    diff = queries[:, None, :].astype(np.float64) - base[None, :, :].astype(np.float64)
    expected = np.sqrt((diff * diff).sum(axis=2)).min(axis=1)
    assert found is not None
    np.testing.assert_allclose(found, expected, atol=1e-9)
    assert FeedbackOverlay("v", {1: base}).nearest(2, queries) is None


def test_a_reason_quotes_a_value_of_any_length_bounded(fresh: Detector, live_traffic) -> None:
    # Given sign-ins whose user name is 60,000 characters (a sender's choice; it parses)
    events = []
    for i, base in enumerate(e for e in live_traffic.events if e["class_uid"] == 3002):
        event = copy.deepcopy(base)
        event.setdefault("user", {})["name"] = f"{i}-" + "u" * 60_000
        events.append(event)
        if len(events) == 100:
            break
    alerting = [o for o in fresh.score_objects(events) if isinstance(o, Scored) and o.is_anomaly]
    quoted = {id(o): [r for r in o.explanation if r.path == "user.name"] for o in alerting}
    quoted = {k: v for k, v in quoted.items() if v}
    assert quoted, "an unseen 60,000-character user name should be a reason"
    # Then each reason quotes it bounded, still distinct per event, and its finding fits
    # without cutting anything but the evidence's own fields
    names = set()
    for reasons in quoted.values():
        for r in reasons:
            values = r.value if isinstance(r.value, list) else [r.value]
            texts = [v for v in values if isinstance(v, str)]
            assert all(len(v) <= 256 for v in texts), r.feature
            long = [v for v in texts if re.search(r"\.\.\. \(600\d\d chars sha256:", v)]
            assert long, texts
            names.update(long)
    assert len(names) == len(quoted)
    finding, _ = fit_finding(build_finding(alerting[0], bundle_version="v", created_ms=1))
    assert "ocsf_detect_trimmed" not in finding["unmapped"]
