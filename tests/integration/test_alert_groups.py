"""Alert groups and suppression rules against moto's DynamoDB, S3, SNS and EventBridge over
HTTP: concurrent writers and retried records count each anomaly once; a rule added through
the API silences the stream."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from ocsf_detect import names
from ocsf_detect.alertstate import RULES_PK, DynamoGroupStore
from ocsf_detect.detector.scorer import Scored
from ocsf_detect.grouping import Anomaly, GroupingPolicy, Notice, count_anomaly, needs_closing
from ocsf_detect.suppression import field_value
from ocsf_detect_tools.localapi import proxy_event
from ocsf_detect_tools.replay import create_alert_table, create_resources, drain_queue
from ocsf_detect_tools.runner import LocalContext
from tests.conftest import api_context

T0 = 1_772_409_600_000


@pytest.fixture
def grouped(emulator_url, bundle_dir, monkeypatch):
    """The stream function's resources with the alert-state table, in its environment."""
    from stream_scoring import adapters

    res = create_resources(grouping=True)
    for key, value in res.handler_environment(bundle_dir).items():
        monkeypatch.setenv(key, value)
    adapters.reset()
    yield res
    adapters.reset()


@pytest.fixture(scope="module")
def anomalous(detector, live_traffic) -> list[dict[str, Any]]:
    outcomes = detector.score_objects(live_traffic.events)
    found = [o.event for o in outcomes if isinstance(o, Scored) and o.is_anomaly]
    assert len(found) >= 6
    return found


def anomaly(n: int) -> Anomaly:
    finding = {"activity_id": 1, "finding_info": {"uid": f"f-{n}"}, "metadata": {}}
    return Anomaly(f"f-{n}", 4001, T0 + n * 1000, 1.5, 70, 4, finding)


class RacingStore(DynamoGroupStore):
    """A store whose first write is preceded by another writer's whole count: the race
    between two instances that read the same group and write it one after the other.
    (moto's server does not survive truly parallel transactions on one table, so the race
    is staged at its worst point rather than left to threads.)"""

    def __init__(self, client: Any, table: str, policy: GroupingPolicy, rival: Any) -> None:
        super().__init__(client, table, policy)
        self._rival = rival

    def count(self, marker: Any, group: Any, expected_version: int) -> str:
        if self._rival is not None:
            rival, self._rival = self._rival, None
            rival()
        return super().count(marker, group, expected_version)


def test_racing_writers_and_retries_count_every_anomaly_once(emulator_url) -> None:
    table = create_alert_table("alert-state-race")
    policy = GroupingPolicy()
    entity = "src_endpoint.ip=10.0.0.5"
    other = DynamoGroupStore(boto3.client("dynamodb"), table, policy)
    rival_out: list[Any] = []

    def rival() -> None:
        rival_out.append(count_anomaly(anomaly(1), other, policy, entity))

    racing = RacingStore(boto3.client("dynamodb"), table, policy, rival)
    # Given two instances that both find no group and both try to open it
    mine = count_anomaly(anomaly(2), racing, policy, entity)
    # Then the rival created it (quiet: one anomaly), and this one, refused, counted into
    # the group it found: the second anomaly, which makes the group speak
    (theirs,) = rival_out
    assert theirs.opened
    assert not mine.opened
    assert (theirs.notice, mine.notice) == (Notice.NONE, Notice.OPEN)
    assert mine.group.count == 2
    # When both anomalies are delivered again (retried records)
    retries = [count_anomaly(anomaly(n), other, policy, entity) for n in (1, 2)]
    assert all(r.retried for r in retries)
    assert [r.notice for r in retries] == [Notice.NONE, Notice.OPEN]  # say what they said
    # Then the group holds each anomaly once
    (group,) = list(other.groups())
    assert group.count == 2
    assert set(group.evidence_uids) == {"f-1", "f-2"}


class ConflictOnce:
    """The emulator's client, whose first transaction is cancelled for a concurrent
    transaction on the same items (DynamoDB's TransactionConflict, which one emulated
    writer cannot provoke)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.conflicts = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        if self.conflicts:
            self.conflicts -= 1
            error = {"Code": "TransactionCanceledException", "Message": "conflict"}
            reasons = [{"Code": "None"}, {"Code": "TransactionConflict"}]
            raise ClientError(
                {"Error": error, "CancellationReasons": reasons}, "TransactWriteItems"
            )
        return self._client.transact_write_items(**kwargs)


def test_a_transaction_conflict_is_counted_again_not_failed(emulator_url) -> None:
    table = create_alert_table("alert-state-conflict")
    policy = GroupingPolicy(notify_min_count=1)
    client = ConflictOnce(boto3.client("dynamodb"))
    store = DynamoGroupStore(client, table, policy)
    counted = count_anomaly(anomaly(1), store, policy, "src_endpoint.ip=10.0.0.9")
    assert client.conflicts == 0  # the conflict happened, and the count went on
    assert counted.notice is Notice.OPEN
    (group,) = list(store.groups())
    assert group.count == 1


def test_an_unreadable_rule_item_is_skipped_not_fatal_to_the_others(emulator_url, caplog):
    from datetime import UTC, datetime

    from ocsf_detect.alertstate import DynamoRuleTable
    from ocsf_detect.suppression import Condition, SuppressionRule

    table = create_alert_table("alert-state-rules")
    client = boto3.client("dynamodb")
    rules = DynamoRuleTable(client, table)
    good = SuppressionRule.new(
        [Condition(field="severity", op="equals", value="Low")],
        reason="noise",
        now=datetime.now(UTC),
    )
    rules.put(good)
    # Given an item a later version (or a hand) wrote, with a field this version lacks
    later = json.loads(good.model_dump_json()) | {"id": "r-later", "priority": 3}
    client.put_item(
        TableName=table,
        Item={"pk": {"S": RULES_PK}, "sk": {"S": "r-later"}, "rule": {"S": json.dumps(later)}},
    )
    # Then the rules read are the readable ones, and the skipped item is named in the log
    assert [r.id for r in rules.list()] == [good.id]
    assert "suppression rule skipped: unreadable item r-later" in caplog.text


def test_only_groups_that_spoke_are_due_for_closing(emulator_url) -> None:
    table = create_alert_table("alert-state-due")
    policy = GroupingPolicy()
    store = DynamoGroupStore(boto3.client("dynamodb"), table, policy)
    # Given one entity anomalous twice (its group spoke) and another once (quiet)
    for n, entity in [(1, "a"), (2, "a"), (3, "b")]:
        count_anomaly(anomaly(n), store, policy, f"src_endpoint.ip={entity}")
    spoke, quiet = sorted(store.groups(), key=lambda g: g.entity)
    assert (spoke.notifications, quiet.notifications) == (1, 0)
    # When the window is over, the sparse index lists only the group that spoke
    after = spoke.window_end_ms + 1
    assert [g.uid for g in store.due_groups(after, 25)] == [spoke.uid]
    # and the quiet one, never closed, still opens on a late second anomaly
    late = count_anomaly(anomaly(4), store, policy, "src_endpoint.ip=b")
    assert (late.notice, late.group.count) == (Notice.OPEN, 2)
    assert {g.uid for g in store.due_groups(after, 25)} == {spoke.uid, quiet.uid}


def test_what_a_window_carries_to_the_next_is_stored_with_the_group(emulator_url) -> None:
    table = create_alert_table("alert-state-carry")
    policy = GroupingPolicy()  # UTC-day windows, speak at 2
    store = DynamoGroupStore(boto3.client("dynamodb"), table, policy)
    day = 24 * 3600 * 1000
    midnight = T0 - T0 % day + day
    entity = "src_endpoint.ip=10.0.0.5"

    def at(n: int, t: int) -> Anomaly:
        finding = {"activity_id": 1, "finding_info": {"uid": f"c-{n}"}, "metadata": {}}
        return Anomaly(f"c-{n}", 4001, t, 1.5, 70, 4, finding)

    # Given an entity anomalous at 23:55 and at 00:05
    before = count_anomaly(at(1, midnight - 5 * 60_000), store, policy, entity)
    after = count_anomaly(at(2, midnight + 5 * 60_000), store, policy, entity)
    # Then the second opens the new day's group, which the table holds with what it carried
    assert (before.notice, after.notice) == (Notice.NONE, Notice.OPEN)
    stored = {g.uid: g for g in store.groups()}
    assert (stored[after.group.uid].carried, stored[after.group.uid].continues) == (
        1,
        before.group.uid,
    )
    assert (stored[before.group.uid].carried, stored[before.group.uid].continues) == (0, None)


def test_a_later_versions_attributes_survive_this_versions_writes(emulator_url) -> None:
    table = create_alert_table("alert-state-versions")
    policy = GroupingPolicy()
    client = boto3.client("dynamodb")
    store = DynamoGroupStore(client, table, policy)
    entity = "src_endpoint.ip=10.0.0.7"
    first = count_anomaly(anomaly(1), store, policy, entity)
    key = {"pk": {"S": f"group#{first.group.uid}"}, "sk": {"S": "group"}}
    # Given a group that a later version (a canary's new code) wrote a field of its own to
    client.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET later_field = :x",
        ExpressionAttributeValues={":x": {"S": "kept"}},
    )
    # When this version counts into it (the group speaks) and then closes it
    spoke = count_anomaly(anomaly(2), store, policy, entity)
    assert (spoke.notice, spoke.group.count) == (Notice.OPEN, 2)
    assert client.get_item(TableName=table, Key=key)["Item"]["open_pk"] == {"S": "open"}
    (due,) = store.due_groups(spoke.group.window_end_ms + 1, 25)
    assert store.close(due)
    # Then the field is still there, next to what this version wrote
    item = client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
    assert item["later_field"] == {"S": "kept"}
    assert (item["count"], item["closed"]) == ({"N": "2"}, {"BOOL": True})
    # and what this version holds no value for is gone: a closed group leaves the index
    assert "open_pk" not in item
    # and a write from a stale version is still refused
    assert not store.close(due)


def kinesis_event(shard: str, datas: list[bytes], base: int) -> dict[str, Any]:
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": str(i),
                    "sequenceNumber": str(base + i),
                    "data": base64.b64encode(d).decode(),
                    "approximateArrivalTimestamp": 1730000000.0 + i,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard}:{base + i}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/stream-role",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/events",
            }
            for i, d in enumerate(datas)
        ]
    }


def test_two_shards_and_a_retried_batch_count_each_anomaly_once(grouped, anomalous):
    from stream_scoring import handler

    datas = [orjson.dumps(e) for e in anomalous]
    # Given one entity's anomalies spread over two shards (alternately)
    shards = [
        kinesis_event("shardId-000000000000", datas[0::2], 1000),
        kinesis_event("shardId-000000000001", datas[1::2], 5000),
    ]
    seen: list[Any] = []
    remove = handler.add_result_observer(seen.append)
    try:
        responses = [handler.lambda_handler(event, LocalContext()) for event in shards]
        # When the first shard's batch is delivered again (Lambda retrying it)
        responses.append(handler.lambda_handler(shards[0], LocalContext()))
    finally:
        remove()
    assert responses == [{"batchItemFailures": []}] * 3
    first = [r.counts() for r in seen[:2]]
    anomalies = sum(c["anomalies"] for c in first)
    assert anomalies == len(datas)
    assert seen[2].counts()["groups_opened"] == 0
    # Then every anomaly is in exactly one group, once
    policy = load_policy()
    store = DynamoGroupStore(boto3.client("dynamodb"), grouped.alert_table, policy)
    groups = list(store.groups())
    assert sum(g.count for g in groups) == anomalies
    assert sum(c["groups_opened"] for c in first) == sum(g.notifications > 0 for g in groups) > 0
    # and what was published is the groups' messages (a retry repeats the same message uids)
    sns = drain_queue(grouped.sns_queue_url)
    eb = drain_queue(grouped.eventbridge_queue_url)
    assert {m["finding_info"]["uid"] for m in sns} == {g.uid for g in groups if g.notifications}
    assert {m["metadata"]["uid"] for m in sns} == {m["detail"]["metadata"]["uid"] for m in eb}
    assert len({m["metadata"]["uid"] for m in sns}) < anomalies
    # and every anomaly's finding is either a message's evidence or archived as withheld,
    # under its group (the retried batch rewrote the same keys)
    published = {
        m["unmapped"]["event_finding_uid"] for m in sns if "event_finding_uid" in m["unmapped"]
    }
    listed = boto3.client("s3").list_objects_v2(
        Bucket=grouped.quarantine_bucket, Prefix=names.WITHHELD_KEY_PREFIX
    )
    keys = [o["Key"] for o in listed.get("Contents", [])]
    withheld = {k.rsplit("/", 1)[1].removesuffix(".json") for k in keys}
    assert not withheld & published
    assert len(withheld) + len(published) == anomalies
    assert {k.split("/")[-2] for k in keys} <= {g.uid for g in groups}


def load_policy() -> GroupingPolicy:
    from stream_scoring.settings import load_settings

    return load_settings().grouping_policy


ANALYST = "arn:aws:iam::123456789012:role/analyst"


def call_api(
    api: Any,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
    caller: str = ANALYST,
) -> tuple[int, Any]:
    raw = json.dumps(body).encode() if body is not None else None
    headers = [("Content-Type", content_type)] if raw else []
    event = proxy_event(method, path, headers, raw)
    event["requestContext"]["identity"]["userArn"] = caller  # as SigV4 authenticated it
    response = api.lambda_handler(event, api_context())
    text = response.get("body")
    return response["statusCode"], json.loads(text) if text else None


@pytest.fixture
def api(grouped, detector, bundle_dir, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    from prediction_api import handler, service
    from prediction_api.settings import get_settings

    monkeypatch.setenv(names.ENV_ALERT_TABLE_NAME, grouped.alert_table)
    get_settings.cache_clear()
    service.use_detector(detector)
    yield handler
    service.use_detector(None)
    monkeypatch.delenv(names.ENV_ALERT_TABLE_NAME, raising=False)
    get_settings.cache_clear()


def test_a_rule_added_through_the_api_silences_the_stream(grouped, api, anomalous, tmp_path: Path):
    from stream_scoring import handler

    # Given a rule on the first anomaly's source address, added through the API
    ip = anomalous[0]["src_endpoint"]["ip"]
    matching = [e for e in anomalous if (e.get("src_endpoint") or {}).get("ip") == ip]
    rule = {
        "match": [{"field": "event.src_endpoint.ip", "op": "cidr", "value": f"{ip}/32"}],
        "reason": "authorised scanner",
    }
    status, created = call_api(api, "POST", "/v1/suppressions", rule)
    assert status == 201
    assert created["active"] is True
    status, listed = call_api(api, "GET", "/v1/suppressions")
    assert status == 200
    assert [r["id"] for r in listed["rules"]] == [created["id"]]
    # When the stream scores every anomaly
    datas = [orjson.dumps(e) for e in anomalous]
    seen: list[Any] = []
    remove = handler.add_result_observer(seen.append)
    try:
        response = handler.lambda_handler(
            kinesis_event("shardId-000000000000", datas, 9000), LocalContext()
        )
    finally:
        remove()
    assert response == {"batchItemFailures": []}
    counts = seen[0].counts()
    # Then the matching anomalies are counted and archived, none of them published
    assert counts["suppressed"] == len(matching)
    sns = drain_queue(grouped.sns_queue_url)
    published_ips = {field_value(m, "event.src_endpoint.ip") for m in sns}
    assert ip not in published_ips
    archived = boto3.client("s3").list_objects_v2(
        Bucket=grouped.quarantine_bucket, Prefix=names.SUPPRESSED_KEY_PREFIX
    )
    keys = [o["Key"] for o in archived.get("Contents", [])]
    assert len(keys) == len(matching)
    assert all(f"/{created['id']}/" in k for k in keys)
    # and the rule can be deleted once, then it is gone
    assert call_api(api, "DELETE", f"/v1/suppressions/{created['id']}")[0] == 204
    status, body = call_api(api, "DELETE", f"/v1/suppressions/{created['id']}")
    assert status == 404
    assert body["error"] == "not_found"


def test_a_malformed_rule_is_refused_and_no_table_is_a_503(grouped, api, monkeypatch):
    from prediction_api.settings import get_settings

    bad = {"match": [{"field": "event.src_endpoint.ip", "op": "cidr", "value": "nope"}]}
    status, body = call_api(api, "POST", "/v1/suppressions", {**bad, "reason": "x"})
    assert status == 422
    assert body["error"] == "validation_error"
    # a rule sent as another media type is a 415, as on every route with a body, even
    # though it parses
    good = {"match": [{"field": "severity", "op": "equals", "value": "Low"}], "reason": "x"}
    status, body = call_api(api, "POST", "/v1/suppressions", good, "text/plain")
    assert (status, body["error"]) == (415, "unsupported_media_type")
    assert call_api(api, "GET", "/v1/suppressions")[1]["rules"] == []
    # a malformed rule id is a 422 on the id, not an "empty body"; a method the route does
    # not take is a 405 naming the one it does
    status, body = call_api(api, "DELETE", "/v1/suppressions/a_b")
    assert (status, body["error"]) == (422, "validation_error")
    status, body = call_api(api, "GET", "/v1/suppressions/abc")
    assert (status, body["error"]) == (405, "method_not_allowed")
    assert "use DELETE" in body["message"]
    # a table that fails the request (here: it does not exist) is a 503 that says a
    # retry is safe, on every route, not a 500
    monkeypatch.setenv(names.ENV_ALERT_TABLE_NAME, "no-such-table")
    get_settings.cache_clear()
    for method, path, body in (
        ("GET", "/v1/suppressions", None),
        ("POST", "/v1/suppressions", good),
        ("DELETE", "/v1/suppressions/abc", None),
    ):
        status, answer = call_api(api, method, path, body)
        assert (status, answer["error"]) == (503, "suppressions_unavailable"), (method, answer)
        assert "the alert-state table failed the request" in answer["message"]
        assert "sending the same request again is safe" in answer["message"]
    monkeypatch.delenv(names.ENV_ALERT_TABLE_NAME)
    get_settings.cache_clear()
    status, body = call_api(api, "GET", "/v1/suppressions")
    assert status == 503
    assert body["error"] == "suppressions_unavailable"
    assert "no alert-state table is configured" in body["message"]


def test_an_unreadable_item_under_a_new_rules_id_is_a_409_that_names_it(grouped, api, caplog):
    from ocsf_detect.suppression import Condition, SuppressionRule

    good = {"match": [{"field": "severity", "op": "equals", "value": "Low"}], "reason": "x"}
    rule_id = SuppressionRule.content_id(
        [Condition(**c) for c in good["match"]], reason="x", expires_at=None
    )
    # Given an item this version cannot read already stored under the rule's id (a later
    # version's rule with a field this one lacks)
    client = boto3.client("dynamodb")
    later = {"id": rule_id, "match": good["match"], "reason": "x", "priority": 3}
    client.put_item(
        TableName=grouped.alert_table,
        Item={"pk": {"S": RULES_PK}, "sk": {"S": rule_id}, "rule": {"S": json.dumps(later)}},
    )
    # When the rule is added, the answer is a 409 naming the id and how to clear it, not a
    # 500, and the item is left as it was
    status, body = call_api(api, "POST", "/v1/suppressions", good)
    assert (status, body["error"]) == (409, "rule_unreadable"), body
    assert f"DELETE /v1/suppressions/{rule_id}" in body["message"]
    assert "suppression rule not added: unreadable item" in caplog.text
    item = client.get_item(
        TableName=grouped.alert_table, Key={"pk": {"S": RULES_PK}, "sk": {"S": rule_id}}
    )["Item"]
    assert json.loads(item["rule"]["S"]) == later
    # Then deleting that id lets the rule be added
    assert call_api(api, "DELETE", f"/v1/suppressions/{rule_id}")[0] == 204
    status, created = call_api(api, "POST", "/v1/suppressions", good)
    assert (status, created["id"]) == (201, rule_id)


class DeletedBeforeEachRead:
    """A DynamoDB client under which every conditional put finds the rule stored and
    every read finds it deleted again (another analyst adding and deleting it)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.puts = 0

    def put_item(self, **kwargs: Any) -> Any:
        self.puts += 1
        self._client.put_item(**{k: v for k, v in kwargs.items() if k != "ConditionExpression"})
        return self._client.put_item(**kwargs)  # fails its condition: the item is there

    def query(self, **kwargs: Any) -> Any:
        key = kwargs["ExpressionAttributeValues"]
        self._client.delete_item(
            TableName=kwargs["TableName"], Key={"pk": key[":pk"], "sk": key[":sk"]}
        )
        return self._client.query(**kwargs)


def test_an_add_that_loses_every_race_stops_with_a_conflict(emulator_url) -> None:
    from datetime import UTC, datetime

    from ocsf_detect.alertstate import PUT_ATTEMPTS, ConcurrentRuleChangeError, DynamoRuleTable
    from ocsf_detect.suppression import Condition, SuppressionRule

    table = create_alert_table("alert-state-rule-race")
    client = DeletedBeforeEachRead(boto3.client("dynamodb"))
    rule = SuppressionRule.new(
        [Condition(field="severity", op="equals", value="Low")], reason="x", now=datetime.now(UTC)
    )
    with pytest.raises(ConcurrentRuleChangeError):
        DynamoRuleTable(client, table).put(rule)
    assert client.puts == PUT_ATTEMPTS


def test_the_scheduled_invocation_closes_what_the_batches_left_open(grouped, anomalous):
    from stream_scoring import handler

    # Given anomalies processed: the batch closes only windows its own event time passed
    datas = [orjson.dumps(e) for e in anomalous]
    event = kinesis_event("shardId-000000000000", datas, 20000)
    assert handler.lambda_handler(event, LocalContext()) == {"batchItemFailures": []}
    policy = load_policy()
    store = DynamoGroupStore(boto3.client("dynamodb"), grouped.alert_table, policy)
    still_open = [g for g in store.groups() if needs_closing(g)]
    assert still_open  # at least the window of the latest anomaly that spoke
    quiet = [g for g in store.groups() if g.notifications == 0]
    # When the schedule invokes the alias (the events are older than any window now)
    answer = handler.lambda_handler({names.CLOSE_GROUPS_PAYLOAD_KEY: True}, LocalContext())
    # Then every group that spoke is closed, and only those with news since their last
    # message spoke again; quiet groups stay as counted (nothing to close)
    assert answer["errors"] == []
    assert answer["closed"] == len(still_open)
    assert all(g.closed == (g.notifications > 0) for g in store.groups())
    assert len([g for g in store.groups() if not g.closed]) == len(quiet)
    assert answer["published"] == sum(1 for g in still_open if g.dirty)


# How IAM authorizes DynamoDB calls: a transaction as the actions of its items.
_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


@pytest.fixture
def table_calls(monkeypatch) -> list[tuple[str, dict[str, Any]]]:
    """Every DynamoDB call made through botocore while the test runs, as (the IAM action
    it is authorized as, its parameters), the calls still going to the emulator."""
    import botocore.client

    calls: list[tuple[str, dict[str, Any]]] = []
    forward = botocore.client.BaseClient._make_api_call

    def observed(client: Any, operation: str, params: dict[str, Any]) -> Any:
        if client.meta.service_model.service_name == "dynamodb":
            if operation == "TransactWriteItems":
                for item in params["TransactItems"]:
                    calls.extend((f"dynamodb:{_ITEM_ACTIONS[k]}", v) for k, v in item.items())
            else:
                calls.append((f"dynamodb:{operation}", params))
        return forward(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", observed)
    return calls


def _partition(params: dict[str, Any]) -> str | None:
    """The table partition key a call names (what ``dynamodb:LeadingKeys`` is checked on)."""
    for field in ("Item", "Key"):
        if field in params:
            return str(params[field]["pk"]["S"])
    bound = re.search(r"\bpk = (:\w+)", params.get("KeyConditionExpression", ""))
    return str(params["ExpressionAttributeValues"][bound.group(1)]["S"]) if bound else None


def test_the_scorers_table_calls_are_what_its_role_may_do(grouped, anomalous, table_calls):
    from stream_scoring import handler

    from infra.constructs.alert_state import SCORER_ACTIONS

    # Given the scorer counting a batch of anomalies, the batch again (a retry), and the
    # schedule closing the groups that spoke
    event = kinesis_event("shardId-000000000000", [orjson.dumps(e) for e in anomalous], 30000)
    assert handler.lambda_handler(event, LocalContext()) == {"batchItemFailures": []}
    assert handler.lambda_handler(event, LocalContext()) == {"batchItemFailures": []}
    answer = handler.lambda_handler({names.CLOSE_GROUPS_PAYLOAD_KEY: True}, LocalContext())
    assert answer["errors"] == []
    assert answer["closed"] > 0
    # Then every call it made to the table is one its role's statement allows
    actions = {action for action, _ in table_calls}
    assert {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem"} <= actions
    assert actions <= set(SCORER_ACTIONS)


def test_the_apis_table_calls_stay_in_the_rules_partition(grouped, api, table_calls):
    from infra.constructs.alert_state import API_ACTIONS

    # Given a rule added, listed and deleted (twice) through the API
    rule = {
        "match": [{"field": "event.src_endpoint.ip", "op": "cidr", "value": "10.1.1.1/32"}],
        "reason": "authorised scanner",
    }
    status, created = call_api(api, "POST", "/v1/suppressions", rule)
    assert status == 201
    assert created["created_by"] == ANALYST
    # sent again (a client's retry, or another analyst): the same rule, stored once, as
    # its first sender stored it
    other = "arn:aws:iam::123456789012:role/other-analyst"
    assert call_api(api, "POST", "/v1/suppressions", rule, caller=other) == (201, created)
    status, listed = call_api(api, "GET", "/v1/suppressions")
    assert (status, listed["rules"]) == (200, [created])
    assert call_api(api, "DELETE", f"/v1/suppressions/{created['id']}")[0] == 204
    assert call_api(api, "DELETE", f"/v1/suppressions/{created['id']}")[0] == 404
    # Then its calls are the actions its role has, each in the rules' partition only
    actions = {action for action, _ in table_calls}
    assert actions == set(API_ACTIONS)
    assert {_partition(params) for _, params in table_calls} == {RULES_PK}
