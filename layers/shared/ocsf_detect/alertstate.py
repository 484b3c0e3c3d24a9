"""The alert-state table (DynamoDB): alert groups, per-anomaly markers, suppression rules.

Adapters over a DynamoDB client handed in (boto3's, built by the function's own adapters):
this module never imports boto3 and reads no environment. One table, keys ``pk`` and
``sk`` (strings), TTL attribute ``expires_at`` (epoch seconds), and a sparse index
``open-groups`` (``open_pk``, ``window_end``) holding only the groups still open that
have spoken (a quiet group has nothing to close: it stays out of the index, and TTL
removes it):

| item | pk | sk |
|---|---|---|
| alert group | ``group#<group uid>`` | ``group`` |
| counted anomaly (marker) | ``event#<finding uid>`` | ``marker`` |
| suppression rule | ``suppressions`` | ``<rule id>`` |

Rules share one partition so that listing them is one Query; groups and markers spread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, Final

from ocsf_detect import names
from ocsf_detect.grouping import GroupingPolicy, GroupState, Marker, Notice, needs_closing
from ocsf_detect.suppression import SuppressionRule

_log = logging.getLogger(__name__)

OPEN_INDEX: Final = names.ALERT_TABLE_OPEN_INDEX
OPEN: Final = "open"
RULES_PK: Final = "suppressions"
RULE_RETENTION_S: Final = 24 * 3600
"""An expired rule stays listed (as expired) a day before TTL removes it."""


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"BOOL": v}
    if isinstance(v, int | float | Decimal):
        return {"N": str(v)}
    if isinstance(v, str):
        return {"S": v}
    if isinstance(v, list | tuple):
        return {"L": [_value(x) for x in v]}
    raise TypeError(f"no DynamoDB type for {type(v).__name__}")


def _item(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: _value(v) for k, v in values.items() if v is not None}


def _plain(attribute: Mapping[str, Any]) -> Any:
    ((kind, v),) = attribute.items()
    if kind == "N":
        number = Decimal(v)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "L":
        return [_plain(x) for x in v]
    return v  # S, BOOL


def _read(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in item.items()}


def _group_key(uid: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"group#{uid}"}, "sk": {"S": "group"}}


def _group_update(g: GroupState, policy: GroupingPolicy, expected_version: int) -> dict[str, Any]:
    """An UpdateItem of a group (a transaction's ``Update`` or ``update_item``'s keyword
    arguments less the table), conditional on ``expected_version`` (0: the group is new).

    It sets the attributes this version knows and removes those it holds none for, and
    leaves every other attribute as it is: one written by a later version (during a
    canary, or before a rollback) survives this version's writes."""
    values = _group_attributes(g, policy)
    names = {f"#a{i}": name for i, name in enumerate(values)}
    bound = {f":a{i}": _value(v) for i, v in enumerate(values.values()) if v is not None}
    sets = [f"#a{i} = :a{i}" for i, v in enumerate(values.values()) if v is not None]
    removes = [f"#a{i}" for i, v in enumerate(values.values()) if v is None]
    clauses = [f"SET {', '.join(sets)}"] if sets else []
    if removes:
        clauses.append(f"REMOVE {', '.join(removes)}")
    expression = " ".join(clauses)
    if expected_version == 0:
        condition = "attribute_not_exists(pk)"
    else:
        condition = "#version = :version"
        names["#version"] = "version"
        bound[":version"] = {"N": str(expected_version)}
    update = {
        "Key": _group_key(g.uid),
        "UpdateExpression": expression,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
    }
    return {**update, "ExpressionAttributeValues": bound} if bound else update


def _group_attributes(g: GroupState, policy: GroupingPolicy) -> dict[str, Any]:
    """A group's attributes besides its key; None: the group holds no value there."""
    return {
        "uid": g.uid,
        "class_uid": g.class_uid,
        "entity": g.entity,
        "window_start": g.window_start_ms,
        "window_end": g.window_end_ms,
        "count": g.count,
        "first_seen": g.first_seen_ms,
        "last_seen": g.last_seen_ms,
        "max_ratio": Decimal(str(round(g.max_ratio, 6))),
        "max_risk": g.max_risk_score,
        "severity_id": g.severity_id,
        "evidence": list(g.evidence_uids),
        "notifications": g.notifications,
        "last_notified": g.last_notified_ms,
        "dirty": g.dirty,
        "closed": g.closed,
        "why": g.why or None,
        "carried": g.carried,
        "continues": g.continues,
        "version": g.version + 1,
        "open_pk": OPEN if needs_closing(g) else None,
        "expires_at": g.window_end_ms // 1000 + policy.retention_s,
    }


def _group(item: Mapping[str, Any]) -> GroupState:
    v = _read(item)
    return GroupState(
        uid=v["uid"],
        class_uid=int(v["class_uid"]),
        entity=v["entity"],
        window_start_ms=int(v["window_start"]),
        window_end_ms=int(v["window_end"]),
        count=int(v["count"]),
        first_seen_ms=int(v["first_seen"]),
        last_seen_ms=int(v["last_seen"]),
        max_ratio=float(v["max_ratio"]),
        max_risk_score=int(v["max_risk"]),
        severity_id=int(v["severity_id"]),
        evidence_uids=tuple(v.get("evidence", ())),
        notifications=int(v["notifications"]),
        last_notified_ms=None if v.get("last_notified") is None else int(v["last_notified"]),
        dirty=bool(v.get("dirty")),
        closed=bool(v.get("closed")),
        version=int(v["version"]),
        why=str(v.get("why") or ""),
        carried=int(v.get("carried") or 0),  # items written before carrying: absent
        continues=v.get("continues"),
    )


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Code", ""))


class DynamoGroupStore:
    """``grouping.GroupStore`` on the alert-state table (strongly consistent reads)."""

    def __init__(self, client: Any, table: str, policy: GroupingPolicy) -> None:
        self._client = client
        self._table = table
        self._policy = policy

    def get_group(self, uid: str) -> GroupState | None:
        got = self._client.get_item(TableName=self._table, Key=_group_key(uid), ConsistentRead=True)
        return _group(got["Item"]) if "Item" in got else None

    def count(self, marker: Marker, group: GroupState, expected_version: int) -> str:
        marker_item = _item(
            {
                "pk": f"event#{marker.event_uid}",
                "sk": "marker",
                "group": marker.group_uid,
                "notice": marker.notice.value,
                "number": marker.number,
                "expires_at": group.window_end_ms // 1000 + self._policy.retention_s,
            }
        )
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": marker_item,
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            **_group_update(group, self._policy, expected_version),
                        }
                    },
                ]
            )
        except Exception as exc:
            if _error_code(exc) != "TransactionCanceledException":
                raise
            reasons = [
                r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])
            ]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return "duplicate"
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                return "conflict"
            if "TransactionConflict" in reasons:
                # another transaction wrote the group (or the marker) at the same moment:
                # read again and count on the fresh state, as for a version conflict
                return "conflict"
            raise
        return "ok"

    def get_marker(self, event_uid: str) -> Marker | None:
        got = self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": f"event#{event_uid}"}, "sk": {"S": "marker"}},
            ConsistentRead=True,
        )
        if "Item" not in got:
            return None
        v = _read(got["Item"])
        return Marker(event_uid, v["group"], Notice(v["notice"]), int(v["number"]))

    def due_groups(self, clock_ms: int, limit: int) -> list[GroupState]:
        found = self._client.query(
            TableName=self._table,
            IndexName=OPEN_INDEX,
            KeyConditionExpression="open_pk = :open AND window_end <= :clock",
            ExpressionAttributeValues={":open": {"S": OPEN}, ":clock": {"N": str(clock_ms)}},
            Limit=limit,
        )
        # The index is eventually consistent: read each group itself before closing it.
        groups = []
        for item in found.get("Items", []):
            g = self.get_group(str(_plain(item["pk"])).removeprefix("group#"))
            if g is not None and needs_closing(g):
                groups.append(g)
        return groups

    def close(self, group: GroupState) -> bool:
        closed = replace(group, closed=True)
        try:
            self._client.update_item(
                TableName=self._table, **_group_update(closed, self._policy, group.version)
            )
        except Exception as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def groups(self) -> Iterator[GroupState]:
        """Every group in the table (a Scan: local tools and tests only)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk = :g",
            "ExpressionAttributeValues": {":g": {"S": "group"}},
        }
        while True:
            page = self._client.scan(**kwargs)
            for item in page.get("Items", []):
                yield _group(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class RuleNotFoundError(Exception):
    def __init__(self, rule_id: str) -> None:
        super().__init__(f"no suppression rule {rule_id}")
        self.field = "id"


class UnreadableRuleError(Exception):
    """An item stored under a new rule's id that this version cannot read (written by a
    later version, or by hand): the rule is neither stored nor known to be there."""

    def __init__(self, rule_id: str, detail: str) -> None:
        super().__init__(
            f"the item stored under suppression rule {rule_id} cannot be read: {detail}"
        )
        self.rule_id = rule_id


class ConcurrentRuleChangeError(Exception):
    """The same rule was deleted and added again by others throughout an add."""

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"suppression rule {rule_id} changed during the request")
        self.rule_id = rule_id


PUT_ATTEMPTS = 3  # a rule deleted between the conditional put and the read is put again

StoredRuleItem = tuple[SuppressionRule, str | None]  # a rule and who created it
StoredRuleItems = list[StoredRuleItem]  # (``DynamoRuleTable.list`` hides the builtin there)


def _stored_rule(item: Mapping[str, Any]) -> StoredRuleItem:
    creator = item.get("created_by", {}).get("S")
    return SuppressionRule.model_validate_json(item["rule"]["S"]), creator


class DynamoRuleTable:
    """Suppression rules in the alert-state table: list, add, delete."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def list(self) -> list[SuppressionRule]:
        return [rule for rule, _ in self.list_stored()]

    def list_stored(self) -> StoredRuleItems:
        """Every readable rule with who created it (None: not recorded), oldest first."""
        rules: StoredRuleItems = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": RULES_PK}},
        }
        while True:
            page = self._client.query(**kwargs)
            for item in page.get("Items", []):
                try:
                    rules.append(_stored_rule(item))
                except (KeyError, ValueError) as exc:
                    # one unreadable item (written by hand, or by a later version) must not
                    # take every other rule, and so every anomaly's record, down with it
                    _log.warning(
                        "suppression rule skipped: unreadable item %s: %s",
                        item.get("sk", {}).get("S"),
                        str(exc).splitlines()[0],
                    )
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(rules, key=lambda r: (r[0].created_at, r[0].id))

    def put(self, rule: SuppressionRule, created_by: str | None = None) -> StoredRuleItem:
        """Store ``rule``, with who created it beside it (an attribute of its own, so
        that every version reads the rule itself); the rule as stored: ``rule``, or the
        one already stored under its id (a rule's id is its content,
        ``SuppressionRule.new``: a retried add), with its creator."""
        expires = (
            None if rule.expires_at is None else int(rule.expires_at.timestamp()) + RULE_RETENTION_S
        )
        item = _item(
            {
                "pk": RULES_PK,
                "sk": rule.id,
                "rule": rule.model_dump_json(),
                "expires_at": expires,
                "created_by": created_by,
            }
        )
        for _ in range(PUT_ATTEMPTS):
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk)",
                )
            except Exception as exc:
                if _error_code(exc) != "ConditionalCheckFailedException":
                    raise
                stored = self._get(rule.id)
                if stored is not None:
                    return stored
                continue  # deleted since: store it after all
            return rule, created_by
        # added and deleted again between every attempt: this add lost each race
        raise ConcurrentRuleChangeError(rule.id)

    def _get(self, rule_id: str) -> StoredRuleItem | None:
        """The rule stored under ``rule_id`` (a query: the API's role reads the rules'
        partition that way only), or None."""
        page = self._client.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk = :sk",
            ExpressionAttributeValues={":pk": {"S": RULES_PK}, ":sk": {"S": rule_id}},
            ConsistentRead=True,
        )
        for item in page.get("Items", []):
            try:
                return _stored_rule(item)
            except (KeyError, ValueError) as exc:
                raise UnreadableRuleError(rule_id, str(exc).splitlines()[0]) from exc
        return None

    def delete(self, rule_id: str) -> None:
        try:
            self._client.delete_item(
                TableName=self._table,
                Key={"pk": {"S": RULES_PK}, "sk": {"S": rule_id}},
                ConditionExpression="attribute_exists(pk)",
            )
        except Exception as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise RuleNotFoundError(rule_id) from exc
            raise


class CachedRules:
    """``stream.RuleSource``: the table's rules, read again after ``ttl_s``; when a read
    fails, the rules read last stay in force (and the first read's failure is raised)."""

    def __init__(
        self,
        table: DynamoRuleTable,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = table
        self._ttl_s = ttl_s
        self._clock = clock
        self._rules: list[SuppressionRule] | None = None
        self._read_at = 0.0
        self.last_error: str | None = None

    def rules(self) -> Sequence[SuppressionRule]:
        now = self._clock()
        if self._rules is None or now - self._read_at >= self._ttl_s:
            try:
                self._rules = self._table.list()
                self.last_error = None
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self._rules is None:
                    raise
                _log.warning(
                    "suppression rules not read again (%s); the %d read last stay in force",
                    self.last_error,
                    len(self._rules),
                )
            self._read_at = now
        return self._rules
