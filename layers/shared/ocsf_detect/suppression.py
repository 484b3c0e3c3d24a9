"""Suppression rules: which anomalies an analyst has decided are never to be published.

Pure: no AWS, no clock (callers pass ``now``). A rule holds one to ten conditions, all of
which must match, a reason, and an optional expiry. A condition names a field of the
Detection Finding by a dotted path (``severity``, ``unmapped.source_class_uid``) or of the
source event with the ``event.`` prefix (``event.src_endpoint.ip``, the finding's
``evidences[0].data``), and compares it:

- ``equals``: the field's value, as text, is the rule's value (``4001`` matches 4001);
- ``cidr``: the field is an IP address inside the rule's network (``10.0.0.0/8``);
- ``prefix``: the field's text starts with the rule's value.

A missing field matches nothing.

>>> rule = SuppressionRule.new(
...     [Condition(field="event.src_endpoint.ip", op="cidr", value="10.0.0.0/8")],
...     reason="internal scanner",
...     now=datetime(2026, 1, 1, tzinfo=UTC),
... )
>>> rule.matches({"evidences": [{"data": {"src_endpoint": {"ip": "10.1.2.3"}}}]})
True
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EVENT_PREFIX = "event."
MAX_CONDITIONS = 10

Operator = Literal["equals", "cidr", "prefix"]


class Condition(BaseModel):
    """One comparison of a finding's field with a value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$",
        description="dotted path into the finding, or into the source event after `event.`",
        examples=["event.src_endpoint.ip"],
    )
    op: Operator = Field(description="equals, cidr (IPv4/IPv6 network) or prefix")
    value: str = Field(min_length=1, max_length=512, examples=["10.0.0.0/8"])

    @model_validator(mode="after")
    def _network_is_valid(self) -> Condition:
        if self.op == "cidr":
            try:
                ipaddress.ip_network(self.value, strict=False)
            except ValueError as exc:
                raise ValueError(f"{self.value!r} is not an IP network: {exc}") from exc
        return self

    def matches(self, finding: Mapping[str, Any]) -> bool:
        found = field_value(finding, self.field)
        if found is None or isinstance(found, Mapping | list):
            return False
        text = str(found).lower() if isinstance(found, bool) else str(found)
        if self.op == "equals":
            return text == self.value
        if self.op == "prefix":
            return text.startswith(self.value)
        try:
            return ipaddress.ip_address(text) in ipaddress.ip_network(self.value, strict=False)
        except ValueError:
            return False


class SuppressionRule(BaseModel):
    """A stored rule: its id, conditions (all must match), why, when it was made and until
    when it holds (``expires_at``; none: until deleted)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    match: list[Condition] = Field(min_length=1, max_length=MAX_CONDITIONS)
    reason: str = Field(min_length=1, max_length=500)
    created_at: datetime
    expires_at: datetime | None = None

    @field_validator("created_at", "expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)

    @classmethod
    def new(
        cls,
        match: Sequence[Condition],
        *,
        reason: str,
        now: datetime,
        expires_at: datetime | None = None,
    ) -> SuppressionRule:
        """A rule made ``now``. Its id is a digest of what it says (``content_id``), so
        the same rule sent twice (a client's retry) is one rule."""
        return cls(
            id=cls.content_id(match, reason=reason, expires_at=expires_at),
            match=list(match),
            reason=reason,
            created_at=now,
            expires_at=expires_at,
        )

    @staticmethod
    def content_id(match: Sequence[Condition], *, reason: str, expires_at: datetime | None) -> str:
        """32 hex digits of the SHA-256 of the conditions (in order), the reason and the
        expiry (UTC, to the microsecond), each part length-prefixed."""
        expiry = "" if expires_at is None else _utc(expires_at).isoformat()
        parts = [f"{c.field}\x00{c.op}\x00{c.value}" for c in match] + [reason, expiry]
        digest = hashlib.sha256()
        for part in parts:
            data = part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "big") + data)
        return digest.hexdigest()[:32]

    def in_force(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now

    def matches(self, finding: Mapping[str, Any]) -> bool:
        return all(condition.matches(finding) for condition in self.match)


def _utc(value: datetime) -> datetime:
    """The time in UTC; a naive one is read as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def field_value(finding: Mapping[str, Any], path: str) -> Any:
    """The value at ``path`` (dotted) in the finding, or in its source event after
    ``event.``; None when any step is missing. A list step takes a numeric index."""
    node: Any = finding
    if path.startswith(EVENT_PREFIX):
        evidences = finding.get("evidences")
        node = evidences[0].get("data") if isinstance(evidences, list) and evidences else None
        path = path[len(EVENT_PREFIX) :]
    for key in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(key)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def first_match(
    rules: Sequence[SuppressionRule], finding: Mapping[str, Any], now: datetime
) -> SuppressionRule | None:
    """The first active rule that matches ``finding``, or None."""
    for rule in rules:
        if rule.in_force(now) and rule.matches(finding):
            return rule
    return None
