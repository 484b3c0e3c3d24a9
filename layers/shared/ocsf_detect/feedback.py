"""Analyst feedback: verdicts on findings, and the overlay of judged-benign embeddings that
both scoring functions search beside the bundle's index (``detector.overlay``).

Layout in the feedback bucket (``names.ENV_FEEDBACK_BUCKET``), all under
``names.FEEDBACK_KEY_PREFIX``:

- ``verdicts/<subject>.json``: the verdict record (``Verdict``), with the source event; a
  later verdict on the same event replaces it;
- ``overlay/<bundle_version>/<class_uid>/<subject>.json``: the event as that bundle
  reads it (``{"vector": [...]}``, the embedding, and for a class whose fine view
  measures the feature space ``"row": {"numeric": [...], "codes": [...]}``, its row
  there: ``detector.overlay.Judged``), present while the event's verdict is benign.

A verdict is about an event, and a finding uid does not name one: every message of an
alert group carries the group's uid as ``finding_info.uid``, each with another event as
its evidence. So the *subject* (``subject_uid``) is a digest of the event: verdicts on
two events of one group are two objects, a malicious verdict takes out only its own
event's vector, and the same event judged again, through whichever finding, replaces its
verdict. One object per subject makes every write
idempotent and free of read-modify-write races between concurrent API calls. A reader
lists the bundle version's overlay prefix and fetches only the objects it has not seen
(``OverlaySource``), at most once per refresh interval. ``ocsf-detect train --feedback``
reads the verdicts back.

The store talks to S3 through a client handed in (built by each function's adapters), so
tests give it the emulator's.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field

from ocsf_detect import names
from ocsf_detect.detector.overlay import FeedbackOverlay, Judged

VerdictKind = Literal["benign", "malicious"]
MAX_NOTE_CHARS = 2000
OVERLAY_READ_CONCURRENCY = 8
"""Overlay objects the scoring functions read at once (``OverlaySource.read_concurrency``):
a read is one small GET, mostly waiting on S3, so a cold container's refresh budget reads
up to this many times the vectors one at a time would (docs/results.md, "Feedback
overlay, cold"). Within botocore's default pool of 10 connections per client."""


class FeedbackError(Exception):
    """Feedback that cannot be taken; ``field`` names the request field at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Verdict(BaseModel):
    """An analyst's verdict on one finding, with the event it was about."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    finding_uid: str = Field(pattern=r"^[0-9A-Za-z._:-]{1,128}$")
    verdict: VerdictKind
    note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)
    class_uid: int
    event: dict[str, Any]
    bundle_version: str
    received_ms: int
    # who sent it: the caller's IAM ARN (or API key id) as API Gateway authenticated it;
    # None for verdicts kept before it was recorded, or sent without authentication
    recorded_by: str | None = Field(default=None, max_length=2048)

    @property
    def subject(self) -> str:
        return subject_uid(self.event)


SUBJECT_PREFIX = "event-"


def subject_uid(event: Mapping[str, Any]) -> str:
    """What a verdict is stored under: ``event-`` and the first 32 hex digits of the
    SHA-256 of the event's canonical JSON (keys sorted, separators ``,`` and ``:``, no
    spaces, non-ASCII characters as they are, UTF-8), so that the same event judged
    through any finding, or sent as itself, is one subject."""
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{SUBJECT_PREFIX}{digest}"


def verdict_key(subject: str) -> str:
    return f"{names.FEEDBACK_KEY_PREFIX}verdicts/{subject}.json"


def overlay_prefix(bundle_version: str) -> str:
    return f"{names.FEEDBACK_KEY_PREFIX}overlay/{bundle_version}/"


def overlay_key(bundle_version: str, class_uid: int, subject: str) -> str:
    return f"{overlay_prefix(bundle_version)}{class_uid}/{subject}.json"


def _class_of(key: str, prefix: str) -> int | None:
    rest = key[len(prefix) :].split("/")
    if len(rest) != 2 or not rest[0].isdigit() or not rest[1].endswith(".json"):
        return None
    return int(rest[0])


class S3FeedbackStore:
    """Verdicts and overlay vectors in one bucket (see the module docstring)."""

    def __init__(self, client: Any, bucket: str, *, read_client: Any = None) -> None:
        """``read_client``: the client of the overlay's reads, when they must fail faster
        than writes (the API reads the overlay inside a scoring request)."""
        self._s3 = client
        self._read = read_client if read_client is not None else client
        self.bucket = bucket

    # -- writes (the API) ------------------------------------------------------------------
    def record(self, verdict: Verdict, judged: Judged) -> None:
        """Keep the verdict; a benign one puts the event as the bundle reads it
        (``judged``) in the overlay, a malicious one takes it out (an event judged benign
        first, malicious later).

        The two writes are ordered so that a failure between them errs towards alerting:
        a benign verdict is kept before its vector silences anything, and a malicious
        one takes the vector out before it is kept. Sending the request again completes
        it (every write is idempotent).

        A benign and a malicious verdict on one event may be sent at once (two analysts):
        the benign one's vector could then land after the malicious one took it out, and
        silence the event under a malicious verdict. So each, last, reads the verdict
        kept and takes the vector out unless that verdict is benign: whichever of the two
        reads last sees the verdict that stays, and a vector never outlives a malicious
        verdict written after it (S3 reads are strongly consistent). The race's other
        outcome, a benign verdict kept without its vector, errs towards alerting."""
        subject = verdict.subject
        key = overlay_key(verdict.bundle_version, verdict.class_uid, subject)
        if verdict.verdict != "benign":
            self._s3.delete_object(Bucket=self.bucket, Key=key)
            if not verdict.finding_uid.startswith(SUBJECT_PREFIX):
                # where versions that stored vectors per finding uid put it (a subject's
                # name is never a finding uid of theirs: the caller names the uid, and must
                # not reach another event's vector through it)
                legacy = overlay_key(verdict.bundle_version, verdict.class_uid, verdict.finding_uid)
                self._s3.delete_object(Bucket=self.bucket, Key=legacy)
        self._s3.put_object(
            Bucket=self.bucket,
            Key=verdict_key(subject),
            Body=orjson.dumps(verdict.model_dump()),
            ContentType="application/json",
        )
        if verdict.verdict == "benign":
            body: dict[str, Any] = {
                "finding_uid": verdict.finding_uid,
                "vector": judged.vector.astype(float).tolist(),
            }
            if judged.row is not None:
                numeric, codes = judged.row
                body["row"] = {
                    "numeric": numeric.astype(float).tolist(),
                    "codes": codes.astype(int).tolist(),
                }
            self._s3.put_object(
                Bucket=self.bucket, Key=key, Body=orjson.dumps(body), ContentType="application/json"
            )
        if self._kept_verdict(subject) != "benign":
            self._s3.delete_object(Bucket=self.bucket, Key=key)

    def _kept_verdict(self, subject: str) -> str | None:
        """The verdict kept for ``subject`` now (None: none, or unreadable)."""
        try:
            got = self._s3.get_object(Bucket=self.bucket, Key=verdict_key(subject))
            kept = orjson.loads(got["Body"].read())
        except orjson.JSONDecodeError:
            return None
        return kept.get("verdict") if isinstance(kept, dict) else None

    # -- reads (both functions, training) -----------------------------------------------------
    def list_keys(self, prefix: str) -> Iterator[tuple[str, str, float]]:
        """(key, ETag, last modified epoch s) of every object under ``prefix``."""
        for page in self.list_pages(prefix):
            yield from page

    def list_pages(
        self, prefix: str, start_after: str | None = None
    ) -> Iterator[list[tuple[str, str, float]]]:
        """The same, a page (up to 1,000 objects, one request) at a time, in key order;
        after ``start_after`` only, when given. Each page is requested as the caller asks."""
        paginator = self._read.get_paginator("list_objects_v2")
        kwargs = {"StartAfter": start_after} if start_after else {}
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, **kwargs):
            items = []
            for item in page.get("Contents", []):
                modified = item.get("LastModified")
                ts = modified.timestamp() if modified is not None else 0.0
                items.append((str(item["Key"]), str(item.get("ETag", "")), ts))
            if items:
                yield items

    def read_json(self, key: str) -> Any:
        return orjson.loads(self._read.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def verdicts(self) -> Iterator[Verdict]:
        for key, _, _ in self.list_keys(f"{names.FEEDBACK_KEY_PREFIX}verdicts/"):
            if key.endswith(".json"):
                yield Verdict.model_validate(self.read_json(key))


_UNREADABLE = object()  # an overlay object whose body is not JSON


RowShape = tuple[int, tuple[int, ...]]
"""A class's rows in its fine view's feature space: (numeric columns, each categorical
field's cardinality): ``Detector.row_shapes``."""


def _judged_of(body: Any, class_uid: int, dim: int, shape: RowShape | None) -> Judged | None:
    """The event an overlay object holds, as this bundle reads it: its finite vector of
    ``dim``, and where the class needs one (``shape``) its row; None when either is
    missing or malformed."""
    if not isinstance(body, dict):
        return None
    vector = body.get("vector")
    row = body.get("row")
    if shape is None:
        return _checked(class_uid, vector, None, dim, None)
    if not isinstance(row, dict):
        return None
    return _checked(class_uid, vector, (row.get("numeric"), row.get("codes")), dim, shape)


def _numbers(values: Any) -> bool:
    return isinstance(values, list | tuple | np.ndarray) and all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
        for v in values
    )


def _checked(
    class_uid: int, vector: Any, row: Any, dim: int, shape: RowShape | None
) -> Judged | None:
    """The event of ``class_uid`` from a vector and a row (numeric, codes) when they are
    what the bundle reads: ``dim`` finite numbers; with ``shape``, that many finite
    numerics and one whole number per field within its cardinality (the codes the feature
    pipeline gives). None otherwise: nothing is mixed in that the bundle would not
    compute."""
    if not _numbers(vector) or len(vector) != dim:
        return None
    vector32 = np.asarray(vector, dtype=np.float32)
    if not np.all(np.isfinite(vector32)):
        return None
    if shape is None:
        return Judged(class_uid, vector32)
    if not isinstance(row, tuple) or len(row) != 2:
        return None
    numeric, codes = row
    n_numeric, cardinalities = shape
    if not _numbers(numeric) or len(numeric) != n_numeric:
        return None
    if not _numbers(codes) or len(codes) != len(cardinalities):
        return None
    if not all(
        isinstance(c, int | np.integer) and 0 <= int(c) < card
        for c, card in zip(codes, cardinalities, strict=True)
    ):
        return None
    numeric32 = np.asarray(numeric, dtype=np.float32)
    if not np.all(np.isfinite(numeric32)):
        return None
    return Judged(class_uid, vector32, (numeric32, np.asarray(codes, dtype=np.int32)))


@dataclass
class OverlaySource:
    """The overlay of one bundle version, refreshed at most every ``refresh_s`` seconds.

    A refresh lists the overlay prefix (one request per 1,000 vectors) and fetches only
    objects not seen before (an object is rewritten only with the same vector, so its key
    and ETag identify it), newest first, for at most ``fetch_budget_s``, listing included:
    a scoring request pays for a refresh, so a container that has many vectors to list or
    read (a cold start, a burst of verdicts, a large overlay) does so over several
    requests, each serving what is read so far, and the next request goes on where it
    stopped.

    The listing is a *sweep* in key order, a page at a time (the budget is checked between
    pages, so every refresh lists at least one): a refresh cut short remembers the last key
    listed and the next one lists on from there. A vector whose key the sweep has passed
    without listing it was removed (a later malicious verdict) and leaves; one whose place
    it has not reached yet stays as it was. A sweep that ends with vectors still to read
    keeps its listing, and the next refreshes read on before a new sweep starts. An overlay
    of up to a page lists in one refresh. A failed refresh (S3 slow or unreachable) keeps
    the last overlay and the sweep where it was, and is tried again at the next interval:
    feedback must never stop scoring. The container that takes a verdict applies it at
    once (``apply``), wherever the sweep is.

    Objects are read ``read_concurrency`` at a time (a wave, started while the budget
    lasts; each read runs in the caller's context, so a request's deadline holds for it).

    ``row_shapes``: the classes whose fine view measures the feature space (bundle
    format 15), with their rows' shapes; an event of such a class without a row of that
    shape is not used (it cannot be measured where the view measures, so it silences
    nothing: the error errs towards alerting).
    """

    store: S3FeedbackStore
    bundle_version: str
    dims: Mapping[int, int]  # class_uid -> the bundle's embedding dimension
    refresh_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    fetch_budget_s: float = 1.0
    read_concurrency: int = 1
    row_shapes: Mapping[int, RowShape] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False, compare=False)
    # one refresh, or one verdict applied, at a time (the local server's threads share one)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )
    # the last refresh listed and read everything there was
    _complete: bool = field(default=False, init=False, repr=False)
    _vectors: dict[str, tuple[str, float, Judged]] = field(default_factory=dict)  # ETag, time
    _unusable: dict[str, str] = field(default_factory=dict)  # key -> ETag, not re-read
    _overlay: FeedbackOverlay | None = None
    _loaded_at: float | None = None
    _sweep_from: str | None = None  # the last key listed by a sweep cut short
    _swept: dict[str, tuple[str, float]] = field(default_factory=dict)  # listed so far
    _to_read: dict[str, tuple[str, float]] | None = None  # a whole sweep, still being read
    last_error: str | None = None

    def current(self) -> FeedbackOverlay:
        """The overlay, refreshed first if it is older than ``refresh_s``. One refresh at
        a time: a caller that finds another thread refreshing (the local server's) serves
        the last overlay rather than wait for it."""
        if self._due() and self._lock.acquire(blocking=False):
            try:
                now = self.clock()
                if self._due():  # not refreshed meanwhile by the thread that held the lock
                    self._loaded_at = now
                    self._complete = False
                    try:
                        self._complete = self._refresh(now + self.fetch_budget_s)
                        if not self._complete:
                            self._loaded_at = None  # cut short: the next call reads on
                        self.last_error = None
                    except Exception as exc:  # any S3 failure: keep the last overlay
                        self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                self._lock.release()
        overlay = self._overlay
        return overlay if overlay is not None else FeedbackOverlay(self.bundle_version)

    def _due(self) -> bool:
        loaded = self._loaded_at
        return loaded is None or self.clock() - loaded >= self.refresh_s

    @property
    def caught_up(self) -> bool:
        """Whether the last refresh finished (listed and read everything there was); False
        before the first, after a failed one, and while refreshes cut short by their
        budget read on."""
        return self._complete

    def invalidate(self) -> None:
        """Refresh on the next ``current()`` (the API, right after recording a verdict)."""
        self._loaded_at = None

    def apply(self, verdict: Verdict, judged: Judged) -> None:
        """What ``S3FeedbackStore.record`` just wrote, in this container's overlay at once:
        a benign verdict's event in, a malicious one's out (the sweep, which may be far
        from the verdict's key in a large overlay, confirms it when it passes)."""
        key = overlay_key(verdict.bundle_version, verdict.class_uid, verdict.subject)
        if verdict.bundle_version != self.bundle_version:
            return
        with self._lock:  # after a refresh under way, which would overwrite it
            for listing in (self._swept, self._to_read or {}):
                listing.pop(key, None)
            usable = None
            if judged.class_uid == verdict.class_uid and verdict.class_uid in self.dims:
                usable = _checked(
                    verdict.class_uid,
                    judged.vector,
                    judged.row,
                    self.dims[verdict.class_uid],
                    self.row_shapes.get(verdict.class_uid),
                )
            if verdict.verdict == "benign" and usable is not None:
                # an ETag no listing has: the sweep reads the object again once, when it
                # passes
                self._vectors[key] = ("", time.time(), usable)
            else:
                self._vectors.pop(key, None)
            self._build()

    def _refresh(self, deadline: float) -> bool:
        """Read what changed; False when ``deadline`` cut the listing or the reading
        short (the next call goes on)."""
        prefix = overlay_prefix(self.bundle_version)
        if self._to_read is not None:  # a finished sweep's listing, still being read
            listed, swept = self._to_read, True
            begin = last = None
            passed_all = False  # its removals were applied when it finished
        else:
            listed = dict(self._swept)  # saved only once this refresh has listed its part
            begin, last, swept = self._sweep_from, None, True
            for page in self.store.list_pages(prefix, begin):
                for key, etag, modified in page:
                    if _class_of(key, prefix) is not None:
                        listed[key] = (etag, modified)
                last = page[-1][0]
                if self.clock() >= deadline:
                    swept = False  # the next refresh lists on from ``last``
                    break
            passed_all = True

        def passed(key: str) -> bool:  # by this refresh's stretch of the sweep
            return (begin is None or key > begin) and (swept or last is None or key <= last)

        # a vector stays while its object does, unchanged; one whose place the sweep has
        # not passed stays until it does
        kept = {
            k: v
            for k, v in self._vectors.items()
            if (listed[k][0] == v[0] if k in listed else not (passed_all and passed(k)))
        }
        complete = swept
        # newest first: the overlay keeps each class's newest vectors
        todo: list[tuple[str, str, float, int]] = []
        for key, (etag, modified) in sorted(listed.items(), key=lambda kv: -kv[1][1]):
            if key in kept or self._unusable.get(key) == etag:
                continue
            class_uid = _class_of(key, prefix)
            if class_uid is None or class_uid not in self.dims:
                continue  # a class this bundle does not score
            todo.append((key, etag, modified, class_uid))
        wave_size = max(1, self.read_concurrency)
        for at in range(0, len(todo), wave_size):
            if self.clock() >= deadline:
                complete = False
                break
            wave = todo[at : at + wave_size]
            bodies = self._read_wave([key for key, *_ in wave])
            for (key, etag, modified, class_uid), body in zip(wave, bodies, strict=True):
                if body is None:
                    continue  # deleted since listed
                got = _judged_of(
                    body, class_uid, self.dims[class_uid], self.row_shapes.get(class_uid)
                )
                if got is None:
                    # not an event as this bundle reads it (another model's vector, a
                    # row missing, or not one at all): never mixed in, and not read again
                    # while the object is unchanged
                    self._unusable[key] = etag
                    continue
                kept[key] = (etag, modified, got)
        # the sweep moves on with the vectors it read (a failure above leaves both as they
        # were); a finished sweep whose reading was cut short is read on by the next ones
        if swept:
            self._sweep_from, self._swept = None, {}
        else:
            self._sweep_from, self._swept = last, listed
        self._to_read = listed if swept and not complete else None
        self._vectors = kept
        self._build()
        return complete

    def _read_wave(self, keys: Sequence[str]) -> list[Any]:
        """The bodies of ``keys`` (None: deleted since listed; ``_UNREADABLE``: not JSON),
        read at once. Any other failure is raised once every read of the wave has ended
        (none runs on past the call), and the refresh keeps what it had."""
        if len(keys) == 1:
            return [self._read_one(keys[0])]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.read_concurrency, "overlay-read")
        # each read in a copy of the caller's context (a request's deadline is a
        # context variable; a context is entered by one thread at a time)
        futures = [
            self._pool.submit(contextvars.copy_context().run, self._read_one, key) for key in keys
        ]
        wait(futures)
        return [f.result() for f in futures]

    def _read_one(self, key: str) -> Any:
        try:
            return self.store.read_json(key)
        except orjson.JSONDecodeError:
            return _UNREADABLE
        except Exception as exc:
            if "NoSuchKey" in f"{type(exc).__name__} {exc}":
                return None
            raise

    def _build(self) -> None:
        newest = sorted(self._vectors.values(), key=lambda v: v[1])  # by time, oldest first
        self._overlay = FeedbackOverlay.of(self.bundle_version, [judged for *_, judged in newest])
