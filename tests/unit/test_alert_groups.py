"""Alert grouping and suppression, pure: an in-memory group store with the table's
conditional-write semantics, and the batch routine with fake channels."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from ocsf_detect.grouping import (
    Anomaly,
    GroupingPolicy,
    GroupState,
    Marker,
    Notice,
    anomaly_message,
    closing_message,
    count_anomaly,
    entity_of,
    group_uid,
)
from ocsf_detect.stream import (
    Alert,
    AlertGrouping,
    ArchivedFinding,
    EventStatus,
    QuarantineItem,
    RetryPolicy,
    StreamRecord,
    close_due_groups,
    deliver_with_retries,
    process_batch,
)
from ocsf_detect.suppression import Condition, SuppressionRule, field_value, first_match
from ocsf_detect_tools.groupsim import MemoryGroupStore, simulate

T0 = 1_772_409_600_000  # a window boundary for windows of an hour
MINUTE = 60_000


class MemoryStore(MemoryGroupStore):
    """The in-memory table, with faults: ``interfere`` writes the group behind the
    caller's back once; ``fail`` makes every write raise."""

    def __init__(self) -> None:
        super().__init__()
        self.interfere: GroupState | None = None
        self.fail = False

    def count(self, marker: Marker, group: GroupState, expected_version: int) -> str:
        if self.fail:
            raise ConnectionError("table unreachable")
        if self.interfere is not None:
            self.groups[self.interfere.uid], self.interfere = self.interfere, None
        return super().count(marker, group, expected_version)


def anomaly(n: int, t: int, severity_id: int = 3, ip: str = "10.0.0.5") -> Anomaly:
    event = {"class_uid": 4001, "time": t, "src_endpoint": {"ip": ip}}
    finding = {
        "class_uid": 2004,
        "activity_id": 1,
        "finding_info": {"uid": f"finding-{n}", "first_seen_time": t},
        "metadata": {"uid": f"finding-{n}"},
        "evidences": [{"data": event}],
        "risk_score": 60 + n,
        "severity_id": severity_id,
        "unmapped": {
            "score": 1.2,
            "threshold": 1.0,
            "source_class_uid": 4001,
            "explanation": [{"feature": "bytes_out", "text": f"bytes_out {n} GB, typical 40 KB"}],
        },
    }
    return Anomaly(f"finding-{n}", 4001, t, 1.2 + n / 100, 60 + n, severity_id, finding)


POLICY = GroupingPolicy(window_s=3600, update_interval_s=900, evidence_cap=3, notify_min_count=1)


def count(store: MemoryStore, a: Anomaly, policy: GroupingPolicy = POLICY) -> Any:
    return count_anomaly(
        a, store, policy, entity_of(a.finding["evidences"][0]["data"], 4001, policy)
    )


def test_a_group_opens_once_updates_per_interval_and_caps_its_evidence() -> None:
    store = MemoryStore()
    # Given anomalies of one entity at 0, 1, 2, 16 and 20 minutes into the window
    outcomes = [count(store, anomaly(n, T0 + m * MINUTE)) for n, m in enumerate([0, 1, 2, 16, 20])]
    # Then the first opens the group, the one 16 minutes after the opening updates it
    assert [o.notice for o in outcomes] == [
        Notice.OPEN,
        Notice.NONE,
        Notice.NONE,
        Notice.UPDATE,
        Notice.NONE,
    ]
    assert [o.opened for o in outcomes] == [True, False, False, False, False]
    (group,) = store.groups.values()
    assert group.count == 5
    assert (group.first_seen_ms, group.last_seen_ms) == (T0, T0 + 20 * MINUTE)
    assert group.max_risk_score == 64
    assert group.severity_id == 3
    assert group.evidence_uids == ("finding-0", "finding-1", "finding-2")  # capped at 3
    assert group.notifications == 2
    assert group.dirty


def test_the_next_window_or_another_entity_is_another_group() -> None:
    store = MemoryStore()
    count(store, anomaly(0, T0))
    count(store, anomaly(1, T0 + 61 * MINUTE))
    count(store, anomaly(2, T0, ip="10.0.0.6"))
    assert len(store.groups) == 3
    assert group_uid(4001, "src_endpoint.ip=10.0.0.5", T0) in store.groups


def test_a_retried_anomaly_is_counted_once_and_says_again_what_it_said() -> None:
    store = MemoryStore()
    first = count(store, anomaly(0, T0))
    again = count(store, anomaly(0, T0))
    assert again.retried
    assert not again.opened
    assert (again.notice, again.number) == (first.notice, first.number) == (Notice.OPEN, 1)
    (group,) = store.groups.values()
    assert group.count == 1


def test_a_concurrent_writer_makes_the_count_start_over_on_fresh_state() -> None:
    store = MemoryStore()
    count(store, anomaly(0, T0))
    (stored,) = store.groups.values()
    # Another instance counts an anomaly between this one's read and its write
    store.interfere = replace(stored, count=2, version=stored.version + 1)
    out = count(store, anomaly(1, T0 + MINUTE))
    assert out.group.count == 3  # the other writer's count is kept, this one added


def test_a_stale_group_this_batch_wrote_is_read_again() -> None:
    store, known = MemoryStore(), {}
    a, b = anomaly(0, T0), anomaly(1, T0 + MINUTE)
    entity = "src_endpoint.ip=10.0.0.5"
    count_anomaly(a, store, POLICY, entity, known)
    (stored,) = store.groups.values()
    assert known == {stored.uid: stored}
    # Another instance counted into the group since this batch wrote it
    store.groups[stored.uid] = replace(stored, count=5, version=stored.version + 1)
    out = count_anomaly(b, store, POLICY, entity, known)
    assert out.group.count == 6
    assert known[stored.uid] == store.groups[stored.uid]


def test_entity_keys_are_configurable_per_class() -> None:
    event = {"src_endpoint": {"ip": "10.0.0.5"}, "user": {"name": "ana"}}
    policy = GroupingPolicy(keys={3002: ("user.name", "src_endpoint.ip")})
    assert entity_of(event, 4001, policy) == "src_endpoint.ip=10.0.0.5"
    assert entity_of(event, 3002, policy) == "user.name=ana,src_endpoint.ip=10.0.0.5"
    assert entity_of({}, 4001, policy) == "-"


def test_below_the_notifying_severity_a_group_is_counted_silently_until_it_rises() -> None:
    store = MemoryStore()
    policy = replace(POLICY, notify_min_severity_id=4)
    quiet = count(store, anomaly(0, T0, severity_id=2), policy)
    loud = count(store, anomaly(1, T0 + MINUTE, severity_id=4), policy)
    assert (quiet.notice, loud.notice) == (Notice.NONE, Notice.OPEN)
    assert loud.group.count == 2


def test_a_one_off_stays_quiet_and_the_second_anomaly_opens_the_group_with_both() -> None:
    store = MemoryStore()
    policy = replace(POLICY, notify_min_count=2)
    # Given an entity anomalous once, then again later in the window, and another only once
    first = count(store, anomaly(0, T0), policy)
    other = count(store, anomaly(1, T0 + MINUTE, ip="10.0.0.9"), policy)
    second_anomaly = anomaly(2, T0 + 30 * MINUTE)
    second = count(store, second_anomaly, policy)
    # Then the one-offs are counted silently and the second anomaly opens its group
    assert (first.notice, other.notice, second.notice) == (Notice.NONE, Notice.NONE, Notice.OPEN)
    assert first.opened
    assert not second.opened
    assert second.group.count == 2
    assert second.group.evidence_uids == ("finding-0", "finding-2")
    assert second.group.first_seen_ms == T0
    # and its opening finding says so: both anomalies, the first one's time
    finding, _ = anomaly_message(second_anomaly, second.group, second.notice, second.number)
    assert finding["activity_id"] == 1
    assert finding["count"] == 2
    assert finding["start_time"] == T0
    assert finding["unmapped"]["group"]["evidence_finding_uids"] == ["finding-0", "finding-2"]
    # a retry of the opening anomaly neither counts it again nor opens the group twice
    again = count(store, second_anomaly, policy)
    assert (again.retried, again.notice, again.number) == (True, Notice.OPEN, second.number)
    assert store.groups[second.group.uid].count == 2
    # and the quiet one-off's group has nothing to say when its window closes
    quiet = store.groups[other.group.uid]
    assert (quiet.count, quiet.notifications, quiet.last_notified_ms) == (1, 0, None)


def test_the_default_policy_speaks_on_a_repeat_within_a_day() -> None:
    policy = GroupingPolicy()
    assert (policy.window_s, policy.notify_min_count, policy.update_interval_s) == (
        24 * 3600,
        2,
        3600,
    )
    # one entity at 08:00 and 20:00 of a day: one group, opened by the second anomaly
    day = T0 - T0 % (24 * 3600 * 1000)
    outcome = simulate(
        [anomaly(1, day + 8 * 3600 * 1000), anomaly(2, day + 20 * 3600 * 1000)], policy
    )
    assert (outcome.groups, outcome.opened, outcome.quiet_groups) == (1, 1, 0)
    assert list(outcome.opened_by.values()) == ["finding-2"]


def test_a_repeat_across_the_window_boundary_still_opens_a_group() -> None:
    store = MemoryStore()
    policy = replace(POLICY, notify_min_count=2)  # hour windows, speak at 2
    # Given an entity anomalous at 5 minutes before a boundary and 5 minutes after it
    before = count(store, anomaly(0, T0 - 5 * MINUTE), policy)
    after_anomaly = anomaly(1, T0 + 5 * MINUTE)
    after = count(store, after_anomaly, policy)
    # Then the first is a quiet one-off of its window and the second opens the next
    # window's group: the previous window's anomaly counts towards the opening
    assert (before.notice, after.notice) == (Notice.NONE, Notice.OPEN)
    assert after.opened
    assert after.group.window_start_ms == T0
    assert (after.group.count, after.group.carried) == (1, 1)
    assert after.group.continues == before.group.uid
    finding, _ = anomaly_message(after_anomaly, after.group, after.notice, after.number)
    section = finding["unmapped"]["group"]
    assert (section["count"], section["carried_count"]) == (1, 1)
    assert section["continues_group_uid"] == before.group.uid
    # and the earlier group stays as it was counted: one anomaly, quiet
    assert store.groups[before.group.uid].notifications == 0


def test_only_what_lies_within_one_update_interval_is_carried() -> None:
    policy = replace(POLICY, notify_min_count=3)  # hour windows, updates every 15 minutes
    store = MemoryStore()
    # Given two anomalies of the previous window, 20 and 10 minutes before the next one
    count(store, anomaly(0, T0 - 17 * MINUTE), policy)
    count(store, anomaly(1, T0 - 7 * MINUTE), policy)
    first = count(store, anomaly(2, T0 + 3 * MINUTE), policy)
    # Then only the later one is carried (1 + 1 < 3: quiet); a third anomaly opens it
    assert (first.notice, first.group.carried) == (Notice.NONE, 1)
    assert count(store, anomaly(3, T0 + 25 * MINUTE), policy).notice is Notice.OPEN
    # Given both previous anomalies within the 15 minutes, both are carried: it opens now
    store = MemoryStore()
    count(store, anomaly(0, T0 - 8 * MINUTE), policy)
    count(store, anomaly(1, T0 - 4 * MINUTE), policy)
    opened = count(store, anomaly(2, T0 + 3 * MINUTE), policy)
    assert (opened.notice, opened.group.carried) == (Notice.OPEN, 2)
    # Given a previous anomaly more than the interval before: each window stands alone
    store = MemoryStore()
    pair = replace(policy, notify_min_count=2)
    count(store, anomaly(0, T0 - 10 * MINUTE), pair)
    late = count(store, anomaly(1, T0 + 15 * MINUTE), pair)
    assert (late.notice, late.group.carried, late.group.continues) == (Notice.NONE, 0, None)


def test_an_incident_that_spoke_speaks_again_at_once_in_the_next_window() -> None:
    store = MemoryStore()
    policy = replace(POLICY, notify_min_count=2)
    # Given a group that spoke just before the boundary
    count(store, anomaly(0, T0 - 10 * MINUTE), policy)
    assert count(store, anomaly(1, T0 - 5 * MINUTE), policy).notice is Notice.OPEN
    # Then the entity's first anomaly after the boundary opens the next window's group
    nxt = count(store, anomaly(2, T0 + MINUTE), policy)
    assert (nxt.notice, nxt.group.count, nxt.group.carried) == (Notice.OPEN, 1, 2)
    # and when the previous window counts a late anomaly, a retry of the opening neither
    # counts it again nor carries anew: what was carried is set when the group is created
    count(store, anomaly(3, T0 - 2 * MINUTE), policy)
    again = count(store, anomaly(2, T0 + MINUTE), policy)
    assert (again.retried, again.notice) == (True, Notice.OPEN)
    assert (store.groups[nxt.group.uid].count, store.groups[nxt.group.uid].carried) == (1, 2)


def test_the_previous_window_is_read_only_where_it_can_count() -> None:
    reads: list[str] = []

    class Reads(MemoryStore):
        def get_group(self, uid: str) -> GroupState | None:
            reads.append(uid)
            return super().get_group(uid)

    store = Reads()
    policy = replace(POLICY, notify_min_count=2)  # hour windows, updates every 15 minutes
    entity = "src_endpoint.ip=10.0.0.5"
    # A group created 20 minutes into its window: nothing of the previous one can count
    count(store, anomaly(0, T0 + 20 * MINUTE), policy)
    assert reads == [group_uid(4001, entity, T0)]
    # One created 5 minutes into the next window reads the previous window's group once
    reads.clear()
    opened = count(store, anomaly(1, T0 + 65 * MINUTE), policy)
    assert reads == [group_uid(4001, entity, T0 + 60 * MINUTE), group_uid(4001, entity, T0)]
    assert (opened.notice, opened.group.carried) == (Notice.NONE, 0)  # 45 minutes apart
    # With groups that speak at their first anomaly, nothing needs carrying
    reads.clear()
    count(store, anomaly(2, T0 + 121 * MINUTE), POLICY)
    assert reads == [group_uid(4001, entity, T0 + 120 * MINUTE)]


def test_messages_carry_the_group_and_keep_one_finding_uid() -> None:
    store = MemoryStore()
    a = anomaly(0, T0)
    opened = count(store, a)
    finding, _ = anomaly_message(a, opened.group, opened.notice, opened.number)
    later = anomaly(1, T0 + 20 * MINUTE, severity_id=5)
    updated = count(store, later)
    update, _ = anomaly_message(later, updated.group, updated.notice, updated.number)
    closing, _ = closing_message(updated.group, bundle_version="1.0.0", now_ms=T0, number=3)
    assert finding["activity_id"] == 1
    assert update["activity_id"] == 2
    assert update["type_uid"] == 200402
    assert closing["activity_id"] == 2
    uids = {m["finding_info"]["uid"] for m in (finding, update, closing)}
    assert uids == {opened.group.uid}
    assert len({m["metadata"]["uid"] for m in (finding, update, closing)}) == 3
    assert update["count"] == 2
    assert update["severity_id"] == 5
    assert update["unmapped"]["group"]["evidence_finding_uids"] == ["finding-0", "finding-1"]
    assert closing["unmapped"]["group"]["state"] == "closed"
    assert "evidences" not in closing
    # the closing update says why, from the group's highest-scoring anomaly (finding-1)
    assert closing["unmapped"]["explanation"] == later.finding["unmapped"]["explanation"]
    assert "Why, for the highest-scoring of them: bytes_out 1 GB" in closing["finding_info"]["desc"]
    # a later, weaker anomaly leaves the group's explanation as it was; a stronger one takes it
    weaker = count(store, replace(anomaly(9, T0 + 25 * MINUTE), ratio=1.0))
    assert weaker.group.why == updated.group.why
    assert "bytes_out 1 GB" in weaker.group.why
    stronger = count(store, replace(anomaly(8, T0 + 26 * MINUTE), ratio=3.0))
    assert "bytes_out 8 GB" in stronger.group.why


# --- suppression rules ---------------------------------------------------------------------
NOW = datetime(2026, 3, 2, tzinfo=UTC)
FINDING = {
    "severity": "High",
    "unmapped": {"source_class_uid": 4001},
    "evidences": [{"data": {"src_endpoint": {"ip": "10.1.2.3"}, "user": {"name": "svc-scan"}}}],
}


@pytest.mark.parametrize(
    ("field", "op", "value", "expected"),
    [
        ("event.src_endpoint.ip", "cidr", "10.0.0.0/8", True),
        ("event.src_endpoint.ip", "cidr", "192.168.0.0/16", False),
        ("event.user.name", "prefix", "svc-", True),
        ("event.user.name", "equals", "svc", False),
        ("unmapped.source_class_uid", "equals", "4001", True),
        ("severity", "equals", "High", True),
        ("event.dst_endpoint.ip", "equals", "10.1.2.3", False),  # missing field
        ("event.user.name", "cidr", "10.0.0.0/8", False),  # not an address
    ],
)
def test_a_condition_compares_one_field(field: str, op: Any, value: str, expected: bool) -> None:
    assert Condition(field=field, op=op, value=value).matches(FINDING) is expected


def test_a_rules_id_is_what_it_says() -> None:
    scanner = Condition(field="event.src_endpoint.ip", op="cidr", value="10.0.0.0/8")
    user = Condition(field="event.user.name", op="equals", value="ana")
    until = NOW + timedelta(hours=1)
    rule = SuppressionRule.new([scanner, user], reason="r", now=NOW, expires_at=until)
    # made again later, or with the expiry written without a zone (read as UTC): one rule
    again = SuppressionRule.new(
        [scanner, user],
        reason="r",
        now=NOW + timedelta(days=1),
        expires_at=until.replace(tzinfo=None),
    )
    assert again.id == rule.id
    assert len(rule.id) == 32
    # anything it says otherwise is another rule, the order of its conditions included
    others = [
        SuppressionRule.new([user, scanner], reason="r", now=NOW, expires_at=until),
        SuppressionRule.new([scanner, user], reason="r ", now=NOW, expires_at=until),
        SuppressionRule.new([scanner, user], reason="r", now=NOW),
        SuppressionRule.new([scanner], reason="r", now=NOW, expires_at=until),
        # the parts cannot run into each other
        SuppressionRule.new(
            [Condition(field="event.user.name", op="equals", value="a")], reason="nar", now=NOW
        ),
        SuppressionRule.new(
            [Condition(field="event.user.name", op="equals", value="an")], reason="ar", now=NOW
        ),
    ]
    assert len({rule.id, *(o.id for o in others)}) == 1 + len(others)


def test_a_rule_needs_every_condition_and_stops_at_its_expiry() -> None:
    scanner = Condition(field="event.src_endpoint.ip", op="cidr", value="10.0.0.0/8")
    other_user = Condition(field="event.user.name", op="equals", value="ana")
    both = SuppressionRule.new([scanner, other_user], reason="r", now=NOW)
    expiring = SuppressionRule.new(
        [scanner], reason="scanner", now=NOW, expires_at=NOW + timedelta(hours=1)
    )
    assert first_match([both], FINDING, NOW) is None
    assert first_match([both, expiring], FINDING, NOW) is expiring
    assert first_match([expiring], FINDING, NOW + timedelta(hours=2)) is None
    assert field_value(FINDING, "evidences.0.data.user.name") == "svc-scan"


def test_a_malformed_network_is_refused() -> None:
    with pytest.raises(ValueError, match="not an IP network"):
        Condition(field="event.src_endpoint.ip", op="cidr", value="10.0.0.0/33")


# --- the batch routine with grouping --------------------------------------------------------
class ListChannel:
    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.sent: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []

    def publish(self, alerts: Sequence[Alert]) -> list[int]:
        self.sent.extend(orjson.loads(a.body) for a in alerts)
        self.bodies.extend(a.body for a in alerts)
        return []


class Sink:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def put(self, items: Sequence[QuarantineItem | ArchivedFinding]) -> list[int]:
        self.items.extend(items)
        return []


class Rules:
    def __init__(self, rules: list[SuppressionRule]) -> None:
        self._rules = rules

    def rules(self) -> list[SuppressionRule]:
        return self._rules


class AnomalousScorer:
    """Every event is an anomaly at its own time (a stand-in for the detector)."""

    bundle_version = "1.0.0"

    def score_batch(self, raws: Sequence[bytes]) -> list[Any]:
        import numpy as np

        from ocsf_detect.detector.scorer import NeighborTable, Scored
        from ocsf_detect.ocsf.outcomes import Parsed

        table = NeighborTable(
            np.zeros((len(raws), 1), dtype=np.int64), np.zeros((len(raws), 1)), None
        )
        out = []
        for i, raw in enumerate(raws):
            event = json.loads(raw)  # as the parser: integers beyond 64 bits stay exact
            out.append(
                Scored(
                    4001,
                    event["time"],
                    2.0,
                    1.0,
                    True,
                    4,
                    Parsed(4001, event["time"], (), event),
                    table,
                    i,
                )
            )
        return out


def records(events: list[dict[str, Any]], shard: str = "shardId-0") -> list[StreamRecord]:
    return [StreamRecord(shard, str(100 + i), orjson.dumps(e)) for i, e in enumerate(events)]


def sweep_after_the_hour(grouping: AlertGrouping, channels: list[ListChannel]) -> Any:
    """Close what is due a minute after the first hour's window (as the schedule would)."""
    policy = RetryPolicy(max_attempts=1)
    return close_due_groups(
        grouping,
        channels,
        clock_ms=T0 + 61 * MINUTE,
        now_ms=T0 + 61 * MINUTE,
        bundle_version="1.0.0",
        deliver=lambda items, send: deliver_with_retries(items, send, policy),
    )


def run(batch: list[StreamRecord], grouping: AlertGrouping, channels: list[ListChannel]) -> Any:
    return process_batch(
        batch,
        AnomalousScorer(),
        publishers=channels,
        quarantine=Sink(),
        policy=RetryPolicy(max_attempts=1),
        now_ms=T0 + 10 * 3600_000,
        grouping=grouping,
        sleep=lambda _: None,
    )


def test_a_batch_publishes_per_group_and_archives_the_suppressed() -> None:
    store, archive = MemoryStore(), Sink()
    rule = SuppressionRule.new(
        [Condition(field="event.src_endpoint.ip", op="equals", value="10.9.9.9")],
        reason="known scanner",
        now=NOW,
    )
    grouping = AlertGrouping(store, Rules([rule]), archive, POLICY)
    channels = [ListChannel("sns"), ListChannel("eventbridge")]
    # Given 6 anomalies of one host within minutes, 2 of another, 2 of a suppressed one
    events = [
        {"class_uid": 4001, "time": T0 + i * MINUTE, "src_endpoint": {"ip": ip}}
        for i, ip in enumerate(["10.0.0.5"] * 6 + ["10.0.0.6"] * 2 + ["10.9.9.9"] * 2)
    ]
    result = run(records(events), grouping, channels)
    counts = result.counts()
    # Then two groups speak once each, the suppressed are archived, none is lost
    assert counts["anomalies"] == 10
    assert counts["suppressed"] == 2
    assert counts["groups_opened"] == 2
    assert [len(c.sent) for c in channels] == [2, 2]
    suppressed = [i for i in archive.items if i.rule_id is not None]
    assert [i.rule_id for i in suppressed] == [rule.id, rule.id]
    # and the anomalies counted without a message of their own (5 of the first host, 1 of
    # the other) are archived as withheld, each under its group
    withheld = [i for i in archive.items if i.rule_id is None]
    assert len(withheld) == counts["withheld_archived"] == 6
    assert {i.group_uid for i in withheld} == set(store.groups)
    assert result.statuses.count(EventStatus.SUPPRESSED) == 2
    assert sum(g.count for g in store.groups.values()) == 8
    # The batch's event time is 9 minutes in: no window is over, nothing closed yet
    assert counts["groups_closed"] == 0


def test_when_the_table_fails_the_anomaly_is_retried_not_dropped() -> None:
    store = MemoryStore()
    store.fail = True
    grouping = AlertGrouping(store, Rules([]), Sink(), POLICY)
    channels = [ListChannel("sns")]
    batch = records([{"class_uid": 4001, "time": T0, "src_endpoint": {"ip": "10.0.0.5"}}])
    result = run(batch, grouping, channels)
    assert result.statuses == [EventStatus.FAILED]
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "100"}]}
    assert channels[0].sent == []


def test_a_window_that_is_over_closes_with_a_last_update_if_it_has_news() -> None:
    store = MemoryStore()
    grouping = AlertGrouping(store, Rules([]), Sink(), POLICY)
    channels = [ListChannel("sns")]
    events = [
        {"class_uid": 4001, "time": T0 + m * MINUTE, "src_endpoint": {"ip": ip}}
        for m, ip in [(0, "10.0.0.5"), (1, "10.0.0.5"), (2, "10.0.0.6")]
    ]
    run(records(events), grouping, channels)
    assert len(channels[0].sent) == 2
    sweep = sweep_after_the_hour(grouping, channels)
    # Both windows are over; only the group that counted more after its opening speaks
    assert (sweep.closed, sweep.published) == (2, 1)
    last = channels[0].sent[-1]
    assert last["unmapped"]["group"] == {**last["unmapped"]["group"], "state": "closed", "count": 2}
    assert all(g.closed for g in store.groups.values())


def test_with_a_count_of_two_a_one_off_is_not_published_nor_closed_and_a_late_repeat_opens_it() -> (
    None
):
    store = MemoryStore()
    grouping = AlertGrouping(store, Rules([]), Sink(), replace(POLICY, notify_min_count=2))
    channels = [ListChannel("sns")]
    # Given one host anomalous three times and another once, in one window
    events = [
        {"class_uid": 4001, "time": T0 + m * MINUTE, "src_endpoint": {"ip": ip}}
        for m, ip in [(0, "10.0.0.5"), (1, "10.0.0.6"), (2, "10.0.0.5"), (3, "10.0.0.5")]
    ]
    counts = run(records(events), grouping, channels).counts()
    # Then only the repeated host's group speaks, at its second anomaly, and only it opened
    assert (counts["anomalies"], counts["groups_opened"]) == (4, 1)
    # the one-off's finding and the first host's first and third are archived, not lost
    archived = grouping.archive.items
    assert counts["withheld_archived"] == len(archived) == 3
    assert sorted(
        orjson.loads(i.body)["unmapped"]["source"]["sequence_number"] for i in archived
    ) == [
        "100",
        "101",
        "103",
    ]
    (opening,) = channels[0].sent
    assert opening["count"] == 2
    assert opening["unmapped"]["group"]["entity"] == "src_endpoint.ip=10.0.0.5"
    # When the window is over: the group that spoke has news (its third anomaly) and is
    # closed; the one-off's group is not due (nothing to close: it stays as counted)
    sweep = sweep_after_the_hour(grouping, channels)
    assert (sweep.closed, sweep.published) == (1, 1)
    assert [m["unmapped"]["group"]["entity"] for m in channels[0].sent] == [
        "src_endpoint.ip=10.0.0.5"
    ] * 2
    quiet = next(g for g in store.groups.values() if g.entity.endswith("10.0.0.6"))
    assert (quiet.closed, quiet.count, quiet.notifications) == (False, 1, 0)
    # When the one-off's host is anomalous again in that window, late (a shard behind)
    late = [{"class_uid": 4001, "time": T0 + 50 * MINUTE, "src_endpoint": {"ip": "10.0.0.6"}}]
    counts = run(records(late, shard="shardId-1"), grouping, channels).counts()
    # Then its group opens: a late repeat is not lost because the window is over
    assert counts["groups_opened"] == 1
    assert channels[0].sent[-1]["unmapped"]["group"]["entity"] == "src_endpoint.ip=10.0.0.6"
    assert channels[0].sent[-1]["count"] == 2


def test_the_count_gates_the_opening_only() -> None:
    store = MemoryStore()
    # Given a group that spoke at its first anomaly
    assert count(store, anomaly(0, T0)).notice is Notice.OPEN
    # When a higher count is configured afterwards, its later anomalies still update it
    policy = replace(POLICY, notify_min_count=5)
    assert count(store, anomaly(1, T0 + 20 * MINUTE), policy).notice is Notice.UPDATE


def test_the_policy_simulator_counts_what_the_stream_would_publish() -> None:
    # Given, in an hour window: one entity with four anomalies over 40 minutes (updates at
    # most every 15 min), one Low-severity one-off on another entity, and a later window
    anomalies = [
        anomaly(1, T0 + 1 * MINUTE),
        anomaly(2, T0 + 5 * MINUTE),  # within 15 min of the opening: counted, silent
        anomaly(3, T0 + 20 * MINUTE),  # 15 min later: an update
        anomaly(4, T0 + 40 * MINUTE, severity_id=4),  # an update again
        anomaly(5, T0 + 45 * MINUTE, severity_id=2, ip="10.0.0.9"),
        anomaly(6, T0 + 61 * MINUTE),  # the next window: a group of its own
        anomaly(7, T0 + 62 * MINUTE),  # silent until the window closes
    ]
    # When a policy speaking at the first anomaly, and one speaking from Medium, count them
    # (in any order)
    default = simulate(reversed(anomalies), POLICY)
    from_medium = simulate(anomalies, replace(POLICY, notify_min_severity_id=3))
    # Then every anomaly is in one group, and the messages are as the lifecycle says
    assert (default.anomalies, default.groups) == (7, 3)
    assert (default.opened, default.updates, default.closing) == (3, 2, 1)
    assert default.notifications == 6
    assert default.opened_by[default.group_of["finding-5"]] == "finding-5"
    assert len(set(default.group_of.values())) == 3
    # the Low one-off's group counts it and never speaks
    assert (from_medium.groups, from_medium.quiet_groups, from_medium.notifications) == (3, 1, 5)
    assert from_medium.group_of["finding-5"] not in from_medium.opened_by


def test_an_entity_of_any_length_is_grouped_published_and_closed() -> None:
    # Given a sender that puts 65,536 two-byte characters in src_endpoint.ip (it parses),
    # anomalous three times within minutes: the entity is quoted in the group's title,
    # description and section, and kept in its item
    store = MemoryStore()
    grouping = AlertGrouping(store, Rules([]), Sink(), POLICY)
    channels = [ListChannel("sns")]
    huge, other = "é" * 65_536, "é" * 65_535 + "e"
    events = [
        {"class_uid": 4001, "time": T0 + m * MINUTE, "src_endpoint": {"ip": ip}}
        for m, ip in [(0, huge), (1, huge), (2, huge), (3, other), (4, other)]
    ]
    result = run(records(events), grouping, channels)
    # Then every anomaly is counted and each entity's group opens, with nothing failed
    assert result.errors == []
    assert EventStatus.FAILED not in result.statuses
    assert len(store.groups) == 2  # two values that differ in their last character
    entities = {g.entity for g in store.groups.values()}
    assert all(len(e) < 300 and e.startswith("src_endpoint.ip=éé") for e in entities)
    assert len(channels[0].sent) == 2
    # And when the window is over both groups, counted since they opened, close with
    # their last update
    sweep = sweep_after_the_hour(grouping, channels)
    assert sweep.errors == []
    assert (sweep.closed, sweep.published) == (2, 2)
    assert [m["unmapped"]["group"]["state"] for m in channels[0].sent[2:]] == ["closed"] * 2
    assert all(g.closed for g in store.groups.values())


def test_configured_entity_keys_bound_each_value() -> None:
    policy = replace(POLICY, keys={4001: ("src_endpoint.ip", "dst_endpoint.port")})
    event = {"src_endpoint": {"ip": "x" * 10_000}, "dst_endpoint": {"port": 443}}
    entity = entity_of(event, 4001, policy)
    ip, port = entity.split(",")
    assert len(ip) <= len("src_endpoint.ip=") + 256
    assert "(10000 chars sha256:" in ip
    assert port == "dst_endpoint.port=443"


def test_a_closing_update_and_an_update_counted_meanwhile_have_different_uids() -> None:
    # Given a group that spoke twice and counted once more since (it has closing news)
    store = MemoryStore()
    policy = replace(POLICY, update_interval_s=3600)
    count(store, anomaly(0, T0), policy)
    dirty = count(store, anomaly(1, T0 + MINUTE), policy).group
    # When the sweep builds its closing update as message 2 and, before the group is
    # closed, another shard counts a late anomaly that the group publishes as message 2
    closing, _ = closing_message(dirty, bundle_version="1.0.0", now_ms=T0, number=2)
    late = count(store, anomaly(2, T0 + 59 * MINUTE), replace(policy, update_interval_s=60))
    assert late.number == 2
    update, _ = anomaly_message(anomaly(2, T0 + 59 * MINUTE), late.group, late.notice, 2)
    # Then a subscriber that deduplicates on metadata.uid keeps both
    assert closing["metadata"]["uid"] != update["metadata"]["uid"]
    # and the closing update sent again by the next sweep is recognised as the same one
    again, _ = closing_message(dirty, bundle_version="1.0.0", now_ms=T0 + 1, number=2)
    assert again["metadata"]["uid"] == closing["metadata"]["uid"]


def test_a_group_message_keeps_an_integer_beyond_64_bits_exactly() -> None:
    store = MemoryStore()
    grouping = AlertGrouping(store, Rules([]), Sink(), POLICY)
    channels = [ListChannel("sns")]
    big = 123456789012345678901234567890
    raw = json.dumps({"class_uid": 4001, "time": T0, "src_endpoint": {"ip": "10.0.0.5"}, "n": big})
    run([StreamRecord("shardId-0", "100", raw.encode())], grouping, channels)
    sent = json.loads(channels[0].bodies[0])
    assert sent["unmapped"]["group"]["count"] == 1  # the group's message, not the finding
    assert sent["evidences"][0]["data"]["n"] == big


def test_a_closing_update_refused_for_good_closes_the_group_but_is_not_published() -> None:
    from ocsf_detect.stream import Refusal

    class RefusingChannel(ListChannel):
        def publish(self, alerts: Sequence[Alert]) -> list[Refusal]:  # type: ignore[override]
            return [
                Refusal(i, "InvalidParameter", "never", permanent=True) for i in range(len(alerts))
            ]

    store = MemoryStore()
    grouping = AlertGrouping(store, Rules([]), Sink(), POLICY)
    events = [
        {"class_uid": 4001, "time": T0 + m * MINUTE, "src_endpoint": {"ip": "10.0.0.5"}}
        for m in (0, 1)
    ]
    run(records(events), grouping, [ListChannel("sns")])  # opens, then has closing news
    sweep = sweep_after_the_hour(grouping, [RefusingChannel("sns")])
    assert (sweep.closed, sweep.published) == (1, 0)
    assert any("closing updates, sns" in e for e in sweep.errors)
    assert all(g.closed for g in store.groups.values())


def test_a_retry_under_other_entity_keys_answers_with_the_group_it_was_counted_in() -> None:
    # Given an anomaly counted into its host's group
    store = MemoryStore()
    first = count(store, anomaly(0, T0))
    # When its record is retried after a release changed the class's entity keys (the
    # retry computes another group uid, which the anomaly never joined)
    other_keys = replace(POLICY, keys={4001: ("dst_endpoint.port",)})
    again = count(store, anomaly(0, T0), other_keys)
    # Then it is not counted again, and it speaks of the group its marker names
    assert again.retried
    assert (again.notice, again.number) == (first.notice, first.number)
    assert again.group.uid == first.group.uid
    assert again.group.version == first.group.version
    (group,) = store.groups.values()
    assert group.count == 1


def test_a_padded_event_is_grouped_and_suppressed_by_the_fields_its_finding_dropped() -> None:
    # Given two anomalous events whose hostname is padded beyond what a finding carries,
    # so that the finding's copy of each event drops src_endpoint, its largest field;
    # and a rule that suppresses the second one's address
    rule = SuppressionRule.new(
        [Condition(field="event.src_endpoint.ip", op="equals", value="10.9.9.9")],
        reason="known scanner",
        now=NOW,
    )
    store, archive = MemoryStore(), Sink()
    grouping = AlertGrouping(store, Rules([rule]), archive, POLICY)
    channels = [ListChannel("sns")]
    pad = "h" * 300_000
    events = [
        {"class_uid": 4001, "time": T0 + m * MINUTE, "src_endpoint": {"ip": ip, "hostname": pad}}
        for m, ip in [(0, "203.0.113.7"), (1, "10.9.9.9")]
    ]
    result = run(records(events), grouping, channels)
    assert result.errors == []
    (suppressed,) = archive.items
    kept = orjson.loads(suppressed.body)
    assert kept["unmapped"]["ocsf_detect_trimmed_fields"] == ["src_endpoint"]
    assert "src_endpoint" not in kept["evidences"][0]["data"]
    # Then the rule still matches the event it was written for (it is not published)
    assert suppressed.rule_id == rule.id
    assert result.statuses.count(EventStatus.SUPPRESSED) == 1
    # and the other anomaly is grouped under its own address, not the no-entity group
    (group,) = store.groups.values()
    assert group.entity == "src_endpoint.ip=203.0.113.7"
    assert len(channels[0].sent) == 1
