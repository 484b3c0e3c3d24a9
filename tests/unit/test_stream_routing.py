"""The pure batch routine with in-memory fakes: routing, retries, batchItemFailures."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence

import numpy as np
import orjson
import pytest

from ocsf_detect.detector.scorer import NeighborTable, Scored
from ocsf_detect.ocsf.outcomes import Parsed, Rejected, RejectReason, Unsupported
from ocsf_detect.stream import (
    Alert,
    EventStatus,
    QuarantineItem,
    Refusal,
    RetryPolicy,
    StreamRecord,
    process_batch,
)


class FakeScorer:
    """Scores {"kind": ...} payloads: normal, anomaly, unsupported, bad."""

    bundle_version = "test-v1"

    def __init__(self) -> None:
        self.calls = 0

    def score_batch(self, raws: Sequence[bytes]):
        self.calls += 1
        out = []
        for raw in raws:
            try:
                kind = orjson.loads(raw)["kind"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                out.append(Rejected(RejectReason.INVALID_JSON, "not JSON"))
                continue
            if kind == "unsupported":
                out.append(Unsupported(1001))
            elif kind == "long_reason":  # a reason quoting a huge key of the sender's
                out.append(Rejected(RejectReason.WRONG_TYPE, "k" * 200_000, field="k" * 200_000))
            else:
                anomalous = kind in ("anomaly", "unserialisable", "big_integer")
                event: dict = {"class_uid": 4001, "kind": kind}
                if kind == "unserialisable":  # no JSON encoder takes a set
                    event["tags"] = {"a", "b"}
                if kind == "big_integer":  # kept exactly as it came, beyond orjson's range
                    event["id"] = 2**70
                out.append(
                    Scored(
                        4001,
                        1,
                        2.0 if anomalous else 0.1,
                        1.0,
                        anomalous,
                        4 if anomalous else 1,
                        Parsed(4001, 1, (), event),
                        NeighborTable(np.array([[0]]), np.array([[0.1]]), ["n"]),
                        0,
                    )
                )
        return out


class FakePublisher:
    def __init__(self, channel: str, fail_uids: set[str] | None = None, failures: int = 10**9):
        self.channel = channel
        self.fail_uids = fail_uids or set()
        self.failures_left = failures
        self.delivered: list[Alert] = []
        self.calls = 0

    def publish(self, alerts: Sequence[Alert]) -> list[int]:
        self.calls += 1
        refused = []
        for i, a in enumerate(alerts):
            if a.uid in self.fail_uids and self.failures_left > 0:
                refused.append(i)
            else:
                self.delivered.append(a)
        if refused:
            self.failures_left -= 1
        return refused


class FakeQuarantine:
    def __init__(self, down: bool = False) -> None:
        self.items: list[QuarantineItem] = []
        self.down = down

    def put(self, items: Sequence[QuarantineItem]) -> list[int]:
        if self.down:
            raise ConnectionError("quarantine unreachable")
        self.items.extend(items)
        return []


def rec(i: int, kind: str | None, shard: str = "shardId-0") -> StreamRecord:
    if kind is None:
        return StreamRecord(shard, str(100 + i), None, "bad base64", raw_data="!!")
    data = b"{not json" if kind == "garbage" else orjson.dumps({"kind": kind})
    return StreamRecord(shard, str(100 + i), data)


KINDS = ["normal", "anomaly", None, "garbage", "unsupported", "normal", "anomaly", "normal"]
NO_WAIT = RetryPolicy(max_attempts=3, base_delay_s=0.0)


def run(records, publishers, quarantine, **kw):
    return process_batch(
        records,
        FakeScorer(),
        publishers=publishers,
        quarantine=quarantine,
        policy=NO_WAIT,
        now_ms=1_000,
        sleep=lambda _s: None,
        **kw,
    )


def test_every_record_is_routed_and_accounted_for():
    sns, eb, quarantine = FakePublisher("sns"), FakePublisher("eventbridge"), FakeQuarantine()
    records = [rec(i, k) for i, k in enumerate(KINDS)]
    result = run(records, [sns, eb], quarantine)
    counts = result.counts()
    assert counts == {
        "events_in": 8,
        "records_in": 8,
        "scored": 5,
        "anomalies": 2,
        "rejected": 2,
        "unsupported": 1,
        "failed": 0,
        "failed_records": 0,
        "quarantined": 2,
        "alerts_published": 2,
        "control_messages": 0,
        "alerts_quarantined": 0,
        # without an alert-state table: no suppression, no groups
        "suppressed": 0,
        "groups_opened": 0,
        "groups_closed": 0,
        "withheld_archived": 0,
        "deferred_records": 0,
    }
    assert counts["events_in"] == sum(
        counts[k] for k in ("scored", "rejected", "unsupported", "failed")
    )
    assert result.response() == {"batchItemFailures": []}
    assert [a.uid for a in sns.delivered] == [a.uid for a in eb.delivered]
    reasons = {q.sequence_number: q.reason for q in quarantine.items}
    assert reasons == {"102": "invalid_encoding", "103": "invalid_json"}
    assert quarantine.items[0].payload == b"!!"  # the undecodable text, kept as it came


def test_transient_publish_failure_is_retried_within_the_invocation():
    records = [rec(i, k) for i, k in enumerate(KINDS)]
    first = run(records, [FakePublisher("sns")], FakeQuarantine())
    flaky_uid = next(p.alert.uid for p in first.planned if p.alert)
    sns = FakePublisher("sns", fail_uids={flaky_uid}, failures=2)  # fails twice, then accepts
    result = run(records, [sns], FakeQuarantine())
    assert result.response() == {"batchItemFailures": []}
    assert sns.calls == 3


def test_persistent_failure_reports_from_the_first_failed_record_onward():
    records = [rec(i, k) for i, k in enumerate(KINDS)]
    first = run(records, [FakePublisher("sns")], FakeQuarantine())
    second_alert_uid = [p.alert.uid for p in first.planned if p.alert][1]  # record 6
    eb = FakePublisher("eventbridge", fail_uids={second_alert_uid})
    result = run(records, [FakePublisher("sns"), eb], FakeQuarantine())
    assert result.failed_identifiers == ["106", "107"]
    assert result.statuses[:6] == [
        EventStatus.SCORED,
        EventStatus.ANOMALY,
        EventStatus.REJECTED,
        EventStatus.REJECTED,
        EventStatus.UNSUPPORTED,
        EventStatus.SCORED,
    ]
    assert result.errors
    assert result.errors[0].startswith("eventbridge")
    # Delivery counts are deliveries: record 6's alert reached SNS only, so it is not
    # counted as published, while the statuses count it as failed (to be sent again).
    counts = result.counts()
    assert (counts["anomalies"], counts["alerts_published"], counts["failed"]) == (1, 1, 2)
    assert counts["quarantined"] == 2


def test_unreachable_quarantine_fails_from_the_first_poison_record():
    records = [rec(i, k) for i, k in enumerate(KINDS)]
    result = run(records, [FakePublisher("sns")], FakeQuarantine(down=True))
    assert result.failed_identifiers == [str(100 + i) for i in range(2, 8)]
    assert result.count(EventStatus.ANOMALY) == 1  # record 1 is before the failure
    assert result.counts()["quarantined"] == 0  # nothing was stored


def test_an_anomaly_no_finding_can_carry_is_quarantined_not_raised():
    records = [rec(0, "anomaly"), rec(1, "unserialisable"), rec(2, "normal")]
    sns, quarantine = FakePublisher("sns"), FakeQuarantine()
    result = run(records, [sns], quarantine)
    assert result.statuses == [EventStatus.ANOMALY, EventStatus.REJECTED, EventStatus.SCORED]
    assert result.response() == {"batchItemFailures": []}
    (item,) = quarantine.items
    assert (item.sequence_number, item.reason) == ("101", "unpublishable")
    assert "score 2" in item.message
    assert "threshold 1" in item.message
    assert item.payload == records[1].data  # the original bytes, for a replay
    assert len(sns.delivered) == 1


def test_an_integer_beyond_64_bits_reaches_the_alert_exactly():
    sns = FakePublisher("sns")
    result = run([rec(0, "big_integer")], [sns], FakeQuarantine())
    assert result.statuses == [EventStatus.ANOMALY]
    (alert,) = sns.delivered
    assert json.loads(alert.body)["evidences"][0]["data"]["id"] == 2**70


def test_quarantine_reasons_are_bounded():
    result = run([rec(0, "long_reason")], [], FakeQuarantine())
    item = result.planned[0].quarantine
    assert item.reason == "wrong_type"
    assert len(item.message) <= 1024
    assert len(item.field) <= 1024
    assert item.message.startswith("kkk")
    assert item.message.endswith("…")


def test_failures_are_per_shard():
    records = [rec(0, None, "shardId-a"), rec(1, "normal", "shardId-b")]
    result = run(records, [FakePublisher("sns")], FakeQuarantine(down=True))
    assert result.failed_identifiers == ["100"]


def test_oversize_records_are_rejected_before_scoring():
    scorer = FakeScorer()
    records = [StreamRecord("s", "1", b"x" * 2000)]
    result = process_batch(
        records,
        scorer,
        publishers=[],
        quarantine=FakeQuarantine(),
        policy=NO_WAIT,
        now_ms=0,
        max_event_bytes=1000,
    )
    assert result.planned[0].quarantine.reason == "too_large"
    assert scorer.calls == 0


@pytest.mark.parametrize("attempts", [1, 3])
def test_retry_policy_is_bounded(attempts):
    records = [rec(1, "anomaly")]
    sns = FakePublisher("sns", fail_uids=set(), failures=0)
    always = FakePublisher("eventbridge")
    sleeps: list[float] = []

    def down(alerts: Sequence[Alert]) -> list[int]:
        always.calls += 1
        raise ConnectionError("down")

    always.publish = down  # type: ignore[method-assign]
    result = process_batch(
        records,
        FakeScorer(),
        publishers=[sns, always],
        quarantine=FakeQuarantine(),
        policy=RetryPolicy(max_attempts=attempts, base_delay_s=0.01),
        now_ms=0,
        sleep=sleeps.append,
    )
    assert result.failed_identifiers == ["101"]
    assert sns.calls == 1  # delivered at once: not re-sent
    assert always.calls == attempts  # the failing channel: exactly max_attempts tries
    assert len(sleeps) == attempts - 1  # backing off between them, not after the last


# -- records holding several events (KPL, NDJSON, gzip, CloudWatch Logs) --------------------
def packed(i: int, data: bytes, shard: str = "shardId-0") -> StreamRecord:
    return StreamRecord(shard, str(100 + i), data)


def ndjson(*kinds: str) -> bytes:
    return b"\n".join(b"{not json" if k == "garbage" else orjson.dumps({"kind": k}) for k in kinds)


def test_every_event_of_a_record_has_its_own_outcome_and_uid():
    from ocsf_detect_tools.producers import kpl_aggregate

    # Given a KPL aggregate, a gzip NDJSON record and a plain one
    kinds = [["normal", "anomaly", "garbage"], ["anomaly", "unsupported"], ["anomaly"]]
    records = [
        packed(0, kpl_aggregate([ndjson(k) for k in kinds[0]])),
        packed(1, gzip.compress(ndjson(*kinds[1]) + b"\n")),
        packed(2, ndjson(*kinds[2])),
    ]
    sns, quarantine = FakePublisher("sns"), FakeQuarantine()
    # When the batch is processed
    result = run(records, [sns], quarantine)
    # Then each event has its status, named by (shard, sequence number, sub_index)
    assert [s.value for s in result.statuses] == [
        "scored", "anomaly", "rejected", "anomaly", "unsupported", "anomaly",
    ]  # fmt: skip
    assert result.event_keys() == [
        ("shardId-0", "100", 0), ("shardId-0", "100", 1), ("shardId-0", "100", 2),
        ("shardId-0", "101", 0), ("shardId-0", "101", 1), ("shardId-0", "102", 0),
    ]  # fmt: skip
    counts = result.counts()
    assert (counts["events_in"], counts["records_in"], counts["failed"]) == (6, 3, 0)
    # ... every alert has its own uid; the bad line alone is quarantined, with its bytes
    assert len({a.uid for a in sns.delivered}) == 3
    (item,) = quarantine.items
    assert (item.sequence_number, item.sub_index, item.payload) == ("100", 2, b"{not json")
    assert item.describe()["sub_index"] == 2


def test_finding_uids_do_not_depend_on_the_bundle_version():
    class OtherVersion(FakeScorer):
        bundle_version = "test-v2"

    records = [packed(0, ndjson("normal", "anomaly"))]
    uids = []
    for scorer in (FakeScorer(), OtherVersion()):
        sns = FakePublisher("sns")
        process_batch(
            records, scorer, publishers=[sns], quarantine=FakeQuarantine(), policy=NO_WAIT,
            now_ms=1, sleep=lambda _s: None,
        )  # fmt: skip
        (alert,) = sns.delivered
        uids.append(alert.uid)
        assert json.loads(alert.body)["metadata"]["product"]["version"] == scorer.bundle_version
    assert uids[0] == uids[1]


def test_a_record_fails_only_when_one_of_its_events_failed():
    # Given three records of one shard; one event of the second cannot be published
    records = [
        packed(0, ndjson("normal", "normal")),
        packed(1, ndjson("normal", "anomaly", "normal")),
        packed(2, ndjson("normal")),
    ]
    first = run(records, [FakePublisher("sns")], FakeQuarantine())
    (uid,) = [p.alert.uid for p in first.planned if p.alert]
    # When that alert is refused on every attempt
    result = run(records, [FakePublisher("sns", fail_uids={uid})], FakeQuarantine())
    # Then the record holding it and the later record are reported, every event of them
    # is failed (they come again), and the first record's events keep their outcome
    assert result.failed_identifiers == ["101", "102"]
    assert [s.value for s in result.statuses] == ["scored"] * 2 + ["failed"] * 4
    counts = result.counts()
    assert counts["events_in"] == counts["scored"] + counts["failed"] == 6
    assert counts["failed_records"] == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (gzip.compress(b" " * 5000), "too_large"),
        (b"\x1f\x8b\x08garbage", "invalid_compression"),
        (b"\xf3\x89\x9a\xc2" + b"\x00" * 20, "invalid_aggregation"),
        (b"\n".join([b"{}"] * 50), "too_many_events"),
    ],
)
def test_a_record_that_cannot_be_unpacked_is_one_rejected_event_with_its_bytes(data, reason):
    from ocsf_detect.records import RecordLimits

    quarantine = FakeQuarantine()
    result = run(
        [packed(0, data), packed(1, ndjson("normal"))],
        [],
        quarantine,
        limits=RecordLimits(max_decompressed_bytes=4096, max_events=10),
    )
    assert [s.value for s in result.statuses] == ["rejected", "scored"]
    (item,) = quarantine.items
    assert (item.reason, item.sub_index, item.payload) == (reason, 0, data)
    assert item.field == "kinesis.data"


def test_records_past_the_batch_bound_are_left_for_the_next_invocation():
    from ocsf_detect.records import RecordLimits

    # Given five gzip records of one shard, each inflating to about 2,000 bytes of events,
    # and a batch bound of 5,000 bytes
    line = orjson.dumps({"kind": "normal", "pad": "x" * 600}) + b"\n"
    records = [packed(i, gzip.compress(line * 3)) for i in range(5)]
    limits = RecordLimits(max_batch_bytes=5_000)
    result = run(records, [FakePublisher("sns")], FakeQuarantine(), limits=limits)
    # Then the first two are read and scored, and the third and every later one are
    # reported without being read, so Lambda sends them again from the third
    assert result.failed_identifiers == ["102", "103", "104"]
    assert [s.value for s in result.statuses] == ["scored"] * 6
    counts = result.counts()
    assert (counts["deferred_records"], counts["failed_records"]) == (3, 3)
    assert any("3 records left for the next invocation" in e for e in result.errors)
    # and the next invocation, sent from there, reads them
    again = run(records[2:], [FakePublisher("sns")], FakeQuarantine(), limits=limits)
    assert again.failed_identifiers == ["104"]
    # A first record larger than the bound on its own is still read (the per-record limit
    # bounds it), so every batch makes progress
    alone = run(records[:1], [], FakeQuarantine(), limits=RecordLimits(max_batch_bytes=1_000))
    assert alone.response() == {"batchItemFailures": []}
    assert alone.counts()["scored"] == 3


def test_control_messages_are_counted_and_dropped():
    from ocsf_detect_tools.producers import CLOUDWATCH_CONTROL_MESSAGE, cloudwatch_envelope

    control = gzip.compress(orjson.dumps(CLOUDWATCH_CONTROL_MESSAGE))
    data = cloudwatch_envelope([ndjson("anomaly"), ndjson("normal")])
    result = run([packed(0, control), packed(1, data)], [FakePublisher("sns")], FakeQuarantine())
    counts = result.counts()
    assert (counts["control_messages"], counts["records_in"], counts["events_in"]) == (1, 2, 2)
    assert result.event_keys() == [("shardId-0", "101", 0), ("shardId-0", "101", 1)]
    assert [s.value for s in result.statuses] == ["anomaly", "scored"]
    assert result.response() == {"batchItemFailures": []}


# -- permanent and transient sink failures, and the invocation's deadline -------------------
class RefusingPublisher(FakePublisher):
    """Refuses the alerts of ``uids`` for good (as SNS does a SenderFault)."""

    def __init__(self, channel: str, uids: set[str]):
        super().__init__(channel)
        self.uids = uids

    def publish(self, alerts: Sequence[Alert]) -> list[Refusal]:
        self.calls += 1
        refused = []
        for i, a in enumerate(alerts):
            if a.uid in self.uids:
                refused.append(Refusal(i, "InvalidParameter", "too long", permanent=True))
            else:
                self.delivered.append(a)
        return refused


def test_a_permanent_refusal_quarantines_the_alert_and_is_not_retried():
    # Given two anomalies, one of which EventBridge will never take
    records = [rec(0, "anomaly"), rec(1, "normal"), rec(2, "anomaly")]
    first = run(records, [FakePublisher("sns")], FakeQuarantine())
    doomed = first.planned[0].alert
    sns, eb = FakePublisher("sns"), RefusingPublisher("eventbridge", {doomed.uid})
    quarantine = FakeQuarantine()
    # When the batch is processed
    result = run(records, [sns, eb], quarantine)
    # Then nothing is retried or failed: the alert is kept in the quarantine with the reason
    assert eb.calls == 1
    assert result.response() == {"batchItemFailures": []}
    assert [s.value for s in result.statuses] == ["anomaly", "scored", "anomaly"]
    (item,) = quarantine.items
    assert (item.reason, item.channel, item.finding_uid) == (
        "undeliverable",
        "eventbridge",
        doomed.uid,
    )
    assert item.payload == doomed.body
    assert "InvalidParameter" in item.message
    assert item.describe()["channel"] == "eventbridge"
    counts = result.counts()
    assert (counts["alerts_published"], counts["alerts_quarantined"]) == (1, 1)
    assert len(sns.delivered) == 2  # the other channel still has it


def test_an_undeliverable_alert_whose_quarantine_fails_fails_its_record():
    records = [rec(0, "normal"), rec(1, "anomaly")]
    uid = run(records, [FakePublisher("sns")], FakeQuarantine()).planned[1].alert.uid
    result = run(records, [RefusingPublisher("sns", {uid})], FakeQuarantine(down=True))
    assert result.failed_identifiers == ["101"]


class Clock:
    """Seconds left before the deadline, spent by each call and sleep."""

    def __init__(self, left: float, per_call: float) -> None:
        self.left = left
        self.per_call = per_call

    def time_left(self) -> float:
        return self.left

    def sleep(self, seconds: float) -> None:
        self.left -= seconds


class SlowPublisher(FakePublisher):
    def __init__(self, channel: str, clock: Clock):
        super().__init__(channel)
        self.clock = clock

    def publish(self, alerts: Sequence[Alert]) -> list[int]:
        self.clock.left -= self.clock.per_call
        return super().publish(alerts)


def test_publishing_stops_before_the_deadline_and_reports_the_unsent_as_failed():
    # Given 25 anomalies (3 calls of 10) and a sink that takes 4 s a call, 10 s left
    records = [rec(i, "anomaly") for i in range(25)]
    clock = Clock(left=10.0, per_call=4.0)
    sns = SlowPublisher("sns", clock)
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.0, reserve_s=5.0)
    # When the batch is processed
    result = process_batch(
        records, FakeScorer(), publishers=[sns], quarantine=FakeQuarantine(), policy=policy,
        now_ms=1, sleep=clock.sleep, time_left=clock.time_left,
    )  # fmt: skip
    # Then two calls were made (10 s, then 6 s left); with 2 s left, under the 5 s reserve,
    # the third was not started
    assert sns.calls == 2
    assert len(sns.delivered) == 20
    # ... the unsent alerts' records, and every later one of the shard, are failed
    assert result.failed_identifiers == [str(100 + i) for i in range(20, 25)]
    assert result.count(EventStatus.ANOMALY) == 20
    assert any("deadline" in e for e in result.errors)


def test_no_back_off_sleeps_past_the_deadline():
    records = [rec(0, "anomaly")]
    uid = run(records, [FakePublisher("sns")], FakeQuarantine()).planned[0].alert.uid
    clock = Clock(left=6.0, per_call=0.0)
    policy = RetryPolicy(max_attempts=5, base_delay_s=2.0, max_delay_s=2.0, reserve_s=5.0)
    sns = FakePublisher("sns", fail_uids={uid})
    result = process_batch(
        records, FakeScorer(), publishers=[sns], quarantine=FakeQuarantine(), policy=policy,
        now_ms=1, sleep=clock.sleep, time_left=clock.time_left,
    )  # fmt: skip
    assert sns.calls == 1  # a 2 s back-off would leave 4 s, under the 5 s reserve
    assert clock.left == 6.0
    assert result.failed_identifiers == ["100"]


def test_with_no_time_left_nothing_is_sent_and_every_delivery_fails():
    records = [rec(i, k) for i, k in enumerate(KINDS)]
    sns, quarantine = FakePublisher("sns"), FakeQuarantine()
    result = process_batch(
        records, FakeScorer(), publishers=[sns], quarantine=quarantine, policy=NO_WAIT,
        now_ms=1, sleep=lambda _s: None, time_left=lambda: 0.0,
    )  # fmt: skip
    assert (sns.calls, quarantine.items) == (0, [])
    # the first record needing a delivery is the first anomaly (record 1)
    assert result.failed_identifiers == [str(100 + i) for i in range(1, 8)]
    counts = result.counts()
    assert counts["events_in"] == counts["scored"] + counts["failed"]


def test_back_off_doubles_with_half_of_it_jittered():
    policy = RetryPolicy()
    for attempt, ceiling in ((1, 0.2), (2, 0.4), (3, 0.8), (6, 2.0)):
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered: throttled shards do not return together
