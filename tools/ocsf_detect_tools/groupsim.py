"""What a grouping policy would publish, without AWS: the stream function's own grouping
code (``ocsf_detect.grouping``) run over a list of anomalies with the group table in
memory. ``benchmarks/grouping_policies.py`` compares policies on a replayed set with it;
the unit tests use the store as the table's stand-in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from ocsf_detect.grouping import (
    Anomaly,
    GroupingPolicy,
    GroupState,
    Marker,
    Notice,
    count_anomaly,
    entity_of,
    event_of,
    has_closing_news,
    needs_closing,
)


class MemoryGroupStore:
    """``GroupStore`` semantics in memory: a marker is written once, a group only at the
    version it was read at."""

    def __init__(self) -> None:
        self.groups: dict[str, GroupState] = {}
        self.markers: dict[str, Marker] = {}

    def get_group(self, uid: str) -> GroupState | None:
        return self.groups.get(uid)

    def count(self, marker: Marker, group: GroupState, expected_version: int) -> str:
        if marker.event_uid in self.markers:
            return "duplicate"
        stored = self.groups.get(group.uid)
        if (stored.version if stored else 0) != expected_version:
            return "conflict"
        self.markers[marker.event_uid] = marker
        self.groups[group.uid] = replace(group, version=expected_version + 1)
        return "ok"

    def get_marker(self, event_uid: str) -> Marker | None:
        return self.markers.get(event_uid)

    def due_groups(self, clock_ms: int, limit: int) -> list[GroupState]:
        due = [g for g in self.groups.values() if needs_closing(g) and g.window_end_ms <= clock_ms]
        return due[:limit]

    def close(self, group: GroupState) -> bool:
        stored = self.groups[group.uid]
        if stored.version != group.version:
            return False
        self.groups[group.uid] = replace(group, closed=True, version=group.version + 1)
        return True


@dataclass
class PolicyOutcome:
    """What ``policy`` made of the anomalies: groups, and the messages each channel got
    (openings, updates, closing updates). ``opened_by``: group uid -> the finding uid of
    the anomaly whose message opened it (groups that never spoke are absent)."""

    anomalies: int = 0
    groups: int = 0
    opened: int = 0
    updates: int = 0
    closing: int = 0
    opened_by: dict[str, str] = field(default_factory=dict)
    group_of: dict[str, str] = field(default_factory=dict)
    """finding uid -> its group's uid"""

    @property
    def notifications(self) -> int:
        return self.opened + self.updates + self.closing

    @property
    def quiet_groups(self) -> int:
        """Groups that counted anomalies and never published (below the notify count or
        severity)."""
        return self.groups - self.opened


def simulate(anomalies: Iterable[Anomaly], policy: GroupingPolicy) -> PolicyOutcome:
    """Count ``anomalies`` (in event-time order, as a stream delivers them) into groups
    as the stream function does, then close every group as the schedule would."""
    store = MemoryGroupStore()
    out = PolicyOutcome()
    known: dict[str, GroupState] = {}
    for a in sorted(anomalies, key=lambda a: a.time_ms):
        entity = entity_of(event_of(a.finding), a.class_uid, policy)
        counted = count_anomaly(a, store, policy, entity, known)
        out.anomalies += 1
        out.group_of[a.finding_uid] = counted.group.uid
        if counted.notice is Notice.OPEN:
            out.opened += 1
            out.opened_by[counted.group.uid] = a.finding_uid
        elif counted.notice is Notice.UPDATE:
            out.updates += 1
    out.groups = len(store.groups)
    out.closing = sum(has_closing_news(g) for g in store.groups.values())
    return out
