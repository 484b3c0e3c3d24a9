"""Alert groups: anomalies that share a key within a window become one alert.

Pure apart from the ``GroupStore`` handed in (the DynamoDB table, ``ocsf_detect.alertstate``,
or an in-memory fake): no boto3, no environment, no clock.

A group is named by the anomaly's class, its entity (the first of ``src_endpoint.ip``,
``user.name``, ``actor.user.name`` the event has, or the fields a class is configured
with) and the event-time window it falls in (tumbling windows of ``window_s``). Its uid is
a UUIDv5 of those, so every function instance, shard and retry names it the same.

Lifecycle (docs/stream.md, "Alert groups"):

- a group speaks once it holds ``notify_min_count`` anomalies (default 2: an entity
  anomalous twice in a day; a one-off is counted and stored, not published) at
  ``notify_min_severity_id`` or above: the anomaly that gets it there opens it, published
  at once as a Detection Finding (activity Create) whose ``finding_info.uid`` is the
  group's uid and whose evidence uids start with the anomalies counted before it. The
  entity's anomalies in the previous window within one update interval count towards the
  opening too (``carried_over``), so a burst across a window boundary is not two one-offs;
- later anomalies are counted into it (count, first and last seen, highest score and
  severity, their finding uids up to ``evidence_cap``); an update (activity Update, same
  ``finding_info.uid``) is published when ``update_interval_s`` of event time has passed
  since the group's last notification;
- when the stream's time passes the window's end (plus ``close_grace_s``) a closing update
  is published, if anything was counted since the last notification; the group is closed.

Each anomaly is counted exactly once: the store writes a marker per event (its finding
uid) in the same transaction as the group, conditional on the marker's absence and on the
group's version. A retried record finds its marker and republishes what the marker says
it published (same message uid: subscribers deduplicate on ``metadata.uid``); a concurrent
writer makes the version check fail and the anomaly is counted again on the fresh state.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final, Protocol

import orjson

from ocsf_detect.detector.calibrate import SEVERITY_NAMES
from ocsf_detect.ocsf.classes import class_name
from ocsf_detect.ocsf.limits import bounded

GROUP_NAMESPACE: Final = uuid.UUID("0b7f6c52-2e4d-5a61-9c3e-8d1f4a7b2c90")
"""UUIDv5 namespace of group uids and notification uids. Never change it."""
DEFAULT_ENTITY_FIELDS: Final = ("src_endpoint.ip", "user.name", "actor.user.name")
NO_ENTITY: Final = "-"
ACTIVITY_UPDATE: Final = 2
FINDING_CLASS_UID: Final = 2004  # ocsf_detect.findings' (not imported: it loads the scorer)
MAX_CONFLICT_RETRIES: Final = 20


class GroupingError(Exception):
    """The group store failed or kept conflicting: the anomaly's record is to be retried."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class GroupingPolicy:
    """How anomalies are grouped and how often a group speaks.

    ``keys``: per class_uid, the event fields (dotted paths) whose values together are the
    entity; a class not listed takes the first of ``DEFAULT_ENTITY_FIELDS`` present."""

    window_s: int = 24 * 3600
    """A day: an entity's anomalies of one day are one alert (as risk-based alerting
    sums an entity's risk over 24 hours), and a slow campaign is not one alert per hour."""
    update_interval_s: int = 3600
    """Event time between two updates of a group at least: an hour."""
    close_grace_s: int = 600
    """How long after its window's end a group stays open, in stream time (a batch's
    latest event time) and wall-clock time (the schedule) alike. A group closes once;
    an anomaly of its window that comes later (a shard behind the others, a retried
    batch, a cold start) is counted but not published. Ten minutes covers ordinary lag,
    which the iterator-age alarm pages on well before; the closing update waits as long."""
    evidence_cap: int = 20
    notify_min_severity_id: int = 1
    notify_min_count: int = 2
    """A group speaks once it counts this many anomalies. At a calibrated alert rate a
    one-off anomaly is mostly the rate's own false positives; an entity anomalous again
    within its window is an incident. 1: every group speaks at its first anomaly."""
    keys: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    retention_s: int = 7 * 24 * 3600
    """How long after its window a group (and its anomalies' markers) stays in the table."""
    sweep_limit: int = 25
    """Groups closed per sweep at most (a batch's sweep must stay short)."""


def _path(event: Mapping[str, Any], dotted: str) -> Any:
    node: Any = event
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def entity_of(event: Mapping[str, Any], class_uid: int, policy: GroupingPolicy) -> str:
    """The entity an anomaly is about, as text: ``field=value`` pairs joined by ``,``.
    Each value is bounded (``limits.bounded``): the entity is quoted in every message of
    its group and kept in the group's item, and a sender chooses how long a field is."""
    configured = policy.keys.get(class_uid)
    if configured:
        parts = [f"{f}={bounded(str(_path(event, f)))}" for f in configured]
        return ",".join(parts)
    for name in DEFAULT_ENTITY_FIELDS:
        value = _path(event, name)
        if value not in (None, ""):
            return f"{name}={bounded(str(value))}"
    return NO_ENTITY


def window_start(time_ms: int, policy: GroupingPolicy) -> int:
    size = policy.window_s * 1000
    return (time_ms // size) * size


def group_uid(class_uid: int, entity: str, start_ms: int) -> str:
    return str(uuid.uuid5(GROUP_NAMESPACE, f"group:{class_uid}:{entity}:{start_ms}"))


def notification_uid(group: str, number: int) -> str:
    """The ``metadata.uid`` of a group's n-th message (1: the opening finding)."""
    return str(uuid.uuid5(GROUP_NAMESPACE, f"message:{group}:{number}"))


def closing_uid(group: str, count: int) -> str:
    """The ``metadata.uid`` of a group's closing update, made when it had counted
    ``count`` anomalies. Not its message number: a sweep publishes the closing update
    before it closes the group, and an anomaly counted on another shard in between is
    published as the same number, an update the closing one must not be deduplicated
    against. A sweep that sends it again (the close failed) sends the same uid."""
    return str(uuid.uuid5(GROUP_NAMESPACE, f"closing:{group}:{count}"))


class Notice(StrEnum):
    """What counting an anomaly made the group say."""

    OPEN = "open"
    UPDATE = "update"
    NONE = "none"


@dataclass(frozen=True)
class GroupState:
    """A group as stored; ``version`` 0: not stored yet."""

    uid: str
    class_uid: int
    entity: str
    window_start_ms: int
    window_end_ms: int
    count: int = 0
    first_seen_ms: int = 0
    last_seen_ms: int = 0
    max_ratio: float = 0.0
    max_risk_score: int = 0
    severity_id: int = 1
    evidence_uids: tuple[str, ...] = ()
    notifications: int = 0
    last_notified_ms: int | None = None
    dirty: bool = False
    """Counted an anomaly since its last notification (a closing update has news)."""
    closed: bool = False
    version: int = 0
    why: str = ""
    """The explanation (``unmapped.explanation``, as JSON) of the group's highest-scoring
    anomaly: what the closing update, which carries no evidence, says of why."""
    carried: int = 0
    """Anomalies of the same class and entity in the previous window (at least those) within
    one update interval before the anomaly that created this group (``carried_over``): they
    count towards the opening, not into ``count``, so a burst across a window boundary
    still speaks. Set when the group is created, not recomputed."""
    continues: str | None = None
    """The uid of that previous window's group, when anything was carried from it."""

    @property
    def severity(self) -> str:
        return SEVERITY_NAMES.get(self.severity_id, "Unknown")


@dataclass(frozen=True)
class Anomaly:
    """What grouping needs of an anomalous event: its finding (as built for the event
    alone) and the figures the group aggregates."""

    finding_uid: str
    class_uid: int
    time_ms: int
    ratio: float
    risk_score: int
    severity_id: int
    finding: Mapping[str, Any]


@dataclass(frozen=True)
class Marker:
    """Written once per counted anomaly, with the group, in one transaction."""

    event_uid: str
    group_uid: str
    notice: Notice
    number: int


class GroupStore(Protocol):
    def get_group(self, uid: str) -> GroupState | None: ...

    def count(self, marker: Marker, group: GroupState, expected_version: int) -> str:
        """Write the marker (if absent) and the group (if its stored version is
        ``expected_version``; 0: absent) together. Returns "ok", "duplicate" (the marker
        exists: already counted) or "conflict" (the group changed). Raises on failure."""
        ...

    def get_marker(self, event_uid: str) -> Marker | None: ...

    def due_groups(self, clock_ms: int, limit: int) -> list[GroupState]:
        """Groups to close (``needs_closing``) whose window ended at or before ``clock_ms``."""
        ...

    def close(self, group: GroupState) -> bool:
        """Mark closed if still at ``group.version``; False when it changed meanwhile."""
        ...


@dataclass(frozen=True)
class Counted:
    """The outcome of counting one anomaly: its group afterwards and what to publish."""

    group: GroupState
    notice: Notice
    number: int
    opened: bool
    """This anomaly created the group (a retry of it did not)."""
    retried: bool = False


def count_anomaly(
    anomaly: Anomaly,
    store: GroupStore,
    policy: GroupingPolicy,
    entity: str,
    known: dict[str, GroupState] | None = None,
) -> Counted:
    """Count ``anomaly`` into its group exactly once (see the module docstring).

    ``known``: groups this caller wrote last (uid -> state as written), tried before
    reading the table; a stale one fails the version check and the group is read."""
    start = window_start(anomaly.time_ms, policy)
    uid = group_uid(anomaly.class_uid, entity, start)
    cached = (known or {}).get(uid)
    prior: GroupState | None = None  # the previous window's group
    prior_read = False  # read at most once, and only to create a group
    for _ in range(MAX_CONFLICT_RETRIES):
        stored, cached = (cached, None) if cached is not None else (store.get_group(uid), None)
        if stored is None and not prior_read:
            prior, prior_read = _previous_group(store, anomaly, entity, start, policy), True
        base = stored or _new_group(anomaly, entity, start, policy, prior)
        after, notice = _add(base, anomaly, policy)
        number = after.notifications if notice is not Notice.NONE else 0
        marker = Marker(anomaly.finding_uid, uid, notice, number)
        written = store.count(marker, after, base.version)
        if written == "ok":
            counted = replace(after, version=base.version + 1)
            if known is not None:
                known[uid] = counted
            return Counted(counted, notice, number, stored is None)
        if written == "duplicate":
            previous = store.get_marker(anomaly.finding_uid)
            if previous is None:  # the marker expired between the two reads: count nothing
                return Counted(store.get_group(uid) or after, Notice.NONE, 0, False, retried=True)
            # The group the anomaly was counted in, which the marker names: a retry after
            # the window length or the entity keys changed (a release) computes another
            # uid, whose group this anomaly never joined and may not exist.
            current = store.get_group(previous.group_uid) or after
            return Counted(current, previous.notice, previous.number, False, retried=True)
    raise GroupingError(
        f"group {uid} kept changing under {MAX_CONFLICT_RETRIES} attempts to count an anomaly",
        field="group",
    )


def _previous_group(
    store: GroupStore, anomaly: Anomaly, entity: str, start_ms: int, policy: GroupingPolicy
) -> GroupState | None:
    """The entity's group of the window before ``start_ms``, read only where it can carry
    something (``may_carry``)."""
    if not may_carry(anomaly.time_ms, start_ms, policy):
        return None
    return store.get_group(group_uid(anomaly.class_uid, entity, start_ms - policy.window_s * 1000))


def _new_group(
    anomaly: Anomaly,
    entity: str,
    start_ms: int,
    policy: GroupingPolicy,
    previous: GroupState | None,
) -> GroupState:
    """The group ``anomaly`` creates, with what the ``previous`` window carries to it."""
    carried = carried_over(previous, anomaly.time_ms, policy)
    return GroupState(
        uid=group_uid(anomaly.class_uid, entity, start_ms),
        class_uid=anomaly.class_uid,
        entity=entity,
        window_start_ms=start_ms,
        window_end_ms=start_ms + policy.window_s * 1000,
        first_seen_ms=anomaly.time_ms,
        last_seen_ms=anomaly.time_ms,
        carried=carried,
        continues=previous.uid if carried and previous is not None else None,
    )


def carry_horizon_ms(policy: GroupingPolicy) -> int:
    """How far back before a new group's first anomaly the previous window still counts."""
    return min(policy.update_interval_s, policy.window_s) * 1000


def may_carry(time_ms: int, start_ms: int, policy: GroupingPolicy) -> bool:
    """Whether the previous window can carry anything to a group created at ``time_ms``:
    only within the horizon of the window's start, and only where the count to open is
    more than one (a group opening at its first anomaly needs nothing carried)."""
    return policy.notify_min_count > 1 and time_ms - start_ms < carry_horizon_ms(policy)


def carried_over(previous: GroupState | None, time_ms: int, policy: GroupingPolicy) -> int:
    """At least how many of the previous window's group's anomalies lie within one update
    interval before ``time_ms`` (the anomaly creating the next window's group): all of them
    when its first does, else at least its last one; 0 when none does. Windows are
    tumbling, so without this an entity anomalous at 23:55 and again at 00:05 would be two
    one-offs. Anomalies within an update interval of each other are one burst (the group
    publishes at most once in it); farther apart, each window's count stands on its own."""
    if previous is None:
        return 0
    horizon = time_ms - carry_horizon_ms(policy)
    if previous.first_seen_ms > horizon:
        return previous.count
    return 1 if previous.last_seen_ms > horizon else 0


def _add(g: GroupState, a: Anomaly, policy: GroupingPolicy) -> tuple[GroupState, Notice]:
    evidence = g.evidence_uids
    if len(evidence) < policy.evidence_cap:
        evidence = (*evidence, a.finding_uid)
    after = replace(
        g,
        count=g.count + 1,
        first_seen_ms=min(g.first_seen_ms, a.time_ms),
        last_seen_ms=max(g.last_seen_ms, a.time_ms),
        max_ratio=max(g.max_ratio, a.ratio),
        max_risk_score=max(g.max_risk_score, a.risk_score),
        severity_id=max(g.severity_id, a.severity_id),
        evidence_uids=evidence,
        why=_explanation_json(a.finding) if g.count == 0 or a.ratio > g.max_ratio else g.why,
    )
    spoke = g.last_notified_ms is not None
    loud = after.severity_id >= policy.notify_min_severity_id and (
        # the count gates the opening only; it includes what the previous window carried
        spoke or after.count + after.carried >= policy.notify_min_count
    )
    if g.closed or not loud:  # late for a closed window, or below the severity or count
        return replace(after, dirty=g.dirty or spoke), Notice.NONE
    if g.last_notified_ms is None:
        return _notified(after, a.time_ms), Notice.OPEN
    if a.time_ms - g.last_notified_ms >= policy.update_interval_s * 1000:
        return _notified(after, a.time_ms), Notice.UPDATE
    return replace(after, dirty=True), Notice.NONE


def _explanation_json(finding: Mapping[str, Any]) -> str:
    unmapped = finding.get("unmapped")
    reasons = unmapped.get("explanation") if isinstance(unmapped, Mapping) else None
    return orjson.dumps(reasons).decode() if isinstance(reasons, list) and reasons else ""


def needs_closing(g: GroupState) -> bool:
    """``g`` is one the sweep closes when its window is over: open, and it has spoken. A
    quiet group is never closed: it stays as counted until its retention ends, so that
    an anomaly arriving late can still bring it to the count."""
    return not g.closed and g.last_notified_ms is not None


def has_closing_news(g: GroupState) -> bool:
    """Closing ``g`` publishes a last update: it spoke before and counted since."""
    return g.dirty and g.last_notified_ms is not None


def _notified(g: GroupState, at_ms: int) -> GroupState:
    return replace(g, notifications=g.notifications + 1, last_notified_ms=at_ms, dirty=False)


# --- the findings a group publishes --------------------------------------------------------
def group_section(g: GroupState, state: str) -> dict[str, Any]:
    """``unmapped.group`` of every message about ``g``."""
    return {
        "uid": g.uid,
        "state": state,
        "entity": g.entity,
        "source_class_uid": g.class_uid,
        "count": g.count,
        "window_start_time": g.window_start_ms,
        "window_end_time": g.window_end_ms,
        "first_seen_time": g.first_seen_ms,
        "last_seen_time": g.last_seen_ms,
        "max_score_ratio": round(g.max_ratio, 4),
        "evidence_finding_uids": list(g.evidence_uids),
        "evidence_truncated": g.count > len(g.evidence_uids),
        "carried_count": g.carried,
        "continues_group_uid": g.continues,
    }


def _aggregate(finding: dict[str, Any], g: GroupState, number: int, state: str) -> None:
    finding["count"] = g.count
    finding["start_time"] = g.first_seen_ms
    finding["end_time"] = g.last_seen_ms
    finding["severity_id"] = g.severity_id
    finding["severity"] = g.severity
    finding["risk_score"] = g.max_risk_score
    info = finding.setdefault("finding_info", {})
    info["uid"] = g.uid
    info["first_seen_time"] = g.first_seen_ms
    info["last_seen_time"] = g.last_seen_ms
    info["title"] = f"Anomalous {class_name(g.class_uid)} activity: {g.entity}"
    metadata = finding.setdefault("metadata", {})
    metadata["uid"] = notification_uid(g.uid, number)
    finding.setdefault("unmapped", {})["group"] = group_section(g, state)


def anomaly_message(
    anomaly: Anomaly, g: GroupState, notice: Notice, number: int
) -> tuple[dict[str, Any], bytes]:
    """The opening finding or an update, built on the triggering anomaly's finding (its
    evidence, score and explanation), carrying the group's aggregate."""
    from ocsf_detect.findings import fit_finding  # the API's rule routes never get here

    finding = _copy(anomaly.finding)
    if notice is Notice.UPDATE:
        finding.update(
            activity_id=ACTIVITY_UPDATE,
            activity_name="Update",
            type_uid=FINDING_CLASS_UID * 100 + ACTIVITY_UPDATE,
            type_name="Detection Finding: Update",
        )
    _aggregate(finding, g, number, "open")
    finding.setdefault("unmapped", {})["event_finding_uid"] = anomaly.finding_uid
    return fit_finding(finding)


def closing_message(
    g: GroupState, *, bundle_version: str, now_ms: int, number: int
) -> tuple[dict[str, Any], bytes]:
    """The last update of a group whose window closed (no evidence: the group's figures
    and the finding uids of its anomalies)."""
    from ocsf_detect.findings import fit_finding

    source = class_name(g.class_uid)
    reasons = orjson.loads(g.why) if g.why else []
    texts = [r["text"] for r in reasons if isinstance(r, Mapping) and r.get("text")]
    why = (
        f" Why, for the highest-scoring of them: {'; '.join(texts)}."
        if texts
        else " No single feature stood out in the highest-scoring of them."
    )
    finding: dict[str, Any] = {
        "class_uid": FINDING_CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": ACTIVITY_UPDATE,
        "activity_name": "Update",
        "type_uid": FINDING_CLASS_UID * 100 + ACTIVITY_UPDATE,
        "type_name": "Detection Finding: Update",
        "time": now_ms,
        "status_id": 1,
        "status": "New",
        "finding_info": {
            "desc": (
                f"{g.count} anomalous {source} events of {g.entity} between the window's "
                "start and end; the window is closed." + why
            ),
            "types": ["Anomaly", source],
            "created_time": now_ms,
            "analytic": {
                "type_id": 4,
                "type": "Learning (ML/DL)",
                "name": "ocsf-detect",
                "uid": f"ocsf-detect:{g.class_uid}",
                "version": bundle_version,
            },
        },
        "metadata": {
            "version": "1.3.0",
            "product": {
                "name": "ocsf-detect",
                "vendor_name": "ocsf-detect",
                "version": bundle_version,
            },
        },
        "unmapped": {"source_class_uid": g.class_uid, "explanation": reasons},
    }
    _aggregate(finding, g, number, "closed")
    finding["metadata"]["uid"] = closing_uid(g.uid, g.count)
    return fit_finding(finding)


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def anomaly_of(finding: Mapping[str, Any]) -> Anomaly:
    """The grouping figures of an event's own finding (``findings.build_finding``)."""
    unmapped = finding.get("unmapped") or {}
    score = float(unmapped.get("score", 0.0))
    threshold = float(unmapped.get("threshold", 0.0))
    info = finding.get("finding_info") or {}
    return Anomaly(
        finding_uid=str(info["uid"]),
        class_uid=int(unmapped.get("source_class_uid", 0)),
        time_ms=int(info.get("first_seen_time") or finding.get("time") or 0),
        ratio=score / threshold if threshold > 0 else 0.0,
        risk_score=int(finding.get("risk_score", 0)),
        severity_id=int(finding.get("severity_id", 1)),
        finding=finding,
    )


def event_of(finding: Mapping[str, Any]) -> Mapping[str, Any]:
    evidences = finding.get("evidences")
    if isinstance(evidences, Sequence) and evidences and isinstance(evidences[0], Mapping):
        data = evidences[0].get("data")
        if isinstance(data, Mapping):
            return data
    return {}
