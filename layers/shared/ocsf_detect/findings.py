"""OCSF Detection Findings (class 2004) built from anomalous scores. Pure: no AWS, no clock.

A finding's ``finding_info.uid`` (and ``metadata.uid``) is a UUIDv5 of the source event's
place in the stream (shard, sequence number and the event's index inside the record, or
the event's ``metadata.uid`` when there is no sequence number). It does not depend on the
bundle: a retry that lands on the other version during a canary publishes the same uid,
so a consumer can drop the duplicates that at-least-once delivery produces. The bundle
version is in ``metadata.product.version`` and ``finding_info.analytic.version``.

Where things are (see docs/stream.md):
- ``evidences[0].data``: the source event, as it came (trimmed only when too large);
- ``unmapped.score`` / ``unmapped.threshold``: the raw k-NN distance score and the class
  threshold; ``risk_score`` is that ratio on a 0-100 scale (50 = on the threshold);
- ``unmapped.nearest_baseline``: the nearest normal baseline events (uid, distance), the
  explanation of the score;
- ``unmapped.explanation``: the features that differ most from the baseline (feature,
  path, value, typical, deviation, text; ``detector.explain``), most different first;
  their texts also end ``finding_info.desc``;
- ``unmapped.source``: shard id, sequence number and sub-record index of the event;
- ``unmapped.ocsf_detect_trimmed``: present (true) when the finding was cut to fit: its
  evidence (``ocsf_detect_trimmed_fields``) or, failing that, its long texts
  (``ocsf_detect_trimmed_texts``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from ocsf_detect.detector.explain import Reason
from ocsf_detect.detector.scorer import Scored
from ocsf_detect.ocsf.classes import class_name
from ocsf_detect.ocsf.limits import MAX_SHOWN_CHARS, bounded

FINDING_CLASS_UID: Final = 2004
FINDING_CATEGORY_UID: Final = 2
ACTIVITY_CREATE: Final = 1
FINDING_TYPE_UID: Final = FINDING_CLASS_UID * 100 + ACTIVITY_CREATE
OCSF_VERSION: Final = "1.3.0"
PRODUCT_NAME: Final = "ocsf-detect"
VENDOR_NAME: Final = "ocsf-detect"
ANALYTIC_TYPE_ID: Final = 4  # OCSF 1.3 analytic.type_id 4: "Learning (ML/DL)"
ANALYTIC_TYPE: Final = "Learning (ML/DL)"

MAX_FINDING_BYTES: Final = 250_000
"""SNS messages and EventBridge entries are capped at 256 KiB including attributes, source
and detail-type; 250,000 bytes of JSON leaves room for those."""

FINDING_NAMESPACE: Final = uuid.UUID("6f1c3c1e-5d2a-5b8e-9a4e-0c5d7e2f4a11")
"""UUIDv5 namespace of finding uids. Never change it: uids would stop matching."""

# Kept in a trimmed evidence: what identifies the event and what a triager filters on.
IDENTITY_FIELDS: Final = frozenset(
    {
        "class_uid",
        "class_name",
        "category_uid",
        "activity_id",
        "type_uid",
        "time",
        "severity_id",
        "metadata",
    }
)


def finding_uid(
    *,
    shard_id: str | None,
    sequence_number: str | None,
    event_uid: str | None,
    sub_index: int = 0,
) -> str:
    """Deterministic uid of the finding about one source event.

    >>> a = finding_uid(shard_id="s-0", sequence_number="42", sub_index=3, event_uid=None)
    >>> a == finding_uid(shard_id="s-0", sequence_number="42", sub_index=3, event_uid="x")
    True
    """
    if sequence_number:
        source = f"kinesis:{shard_id or ''}:{sequence_number}:{sub_index}"
    elif event_uid:
        source = f"event:{event_uid}"
    else:
        raise ValueError("a finding needs a sequence number or the event's metadata.uid")
    return str(uuid.uuid5(FINDING_NAMESPACE, source))


def risk_score(score: float, threshold: float) -> int:
    """0-100: 50 at the threshold, 100 at twice the threshold or more."""
    if threshold <= 0:
        return 100 if score > 0 else 0
    return max(0, min(100, round(50.0 * score / threshold)))


def event_uid_of(event: Mapping[str, Any]) -> str | None:
    metadata = event.get("metadata")
    if isinstance(metadata, Mapping):
        uid = metadata.get("uid")
        if isinstance(uid, str | int) and not isinstance(uid, bool):
            return str(uid)
    return None


def why_text(reasons: Sequence[Reason]) -> str:
    """The sentence a finding's description ends with.

    >>> why_text([])
    'No single feature stands out: the combination is unusual (see the nearest baseline events).'
    """
    if not reasons:
        return (
            "No single feature stands out: the combination is unusual "
            "(see the nearest baseline events)."
        )
    return "Why: " + "; ".join(r.text for r in reasons) + "."


def build_finding(
    scored: Scored,
    *,
    bundle_version: str,
    created_ms: int,
    shard_id: str | None = None,
    sequence_number: str | None = None,
    sub_index: int = 0,
) -> dict[str, Any]:
    """A Detection Finding (OCSF 1.3, activity Create) for an anomalous ``Scored``."""
    source_uid = event_uid_of(scored.event)
    uid = finding_uid(
        shard_id=shard_id,
        sequence_number=sequence_number,
        sub_index=sub_index,
        event_uid=source_uid,
    )
    source_class = class_name(scored.class_uid)
    ratio = scored.score / scored.threshold if scored.threshold > 0 else float("inf")
    reasons = scored.explanation
    return {
        "class_uid": FINDING_CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": FINDING_CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "type_uid": FINDING_TYPE_UID,
        "type_name": "Detection Finding: Create",
        "time": created_ms,
        "severity_id": scored.severity_id,
        "severity": scored.severity,
        "status_id": 1,
        "status": "New",
        "risk_score": risk_score(scored.score, scored.threshold),
        "finding_info": {
            "uid": uid,
            "title": f"Anomalous {source_class} event",
            "desc": (
                f"A {source_class} event (class_uid {scored.class_uid}) is {ratio:.2f}x the "
                f"anomaly threshold of its class: it is far from every normal baseline event. "
                + why_text(reasons)
            ),
            "types": ["Anomaly", source_class],
            "created_time": created_ms,
            "first_seen_time": scored.time_ms,
            "last_seen_time": scored.time_ms,
            "analytic": {
                "type_id": ANALYTIC_TYPE_ID,
                "type": ANALYTIC_TYPE,
                "name": PRODUCT_NAME,
                "uid": f"{PRODUCT_NAME}:{scored.class_uid}",
                "version": bundle_version,
            },
        },
        "evidences": [{"data": scored.event}],
        "metadata": {
            "version": OCSF_VERSION,
            "uid": uid,
            "correlation_uid": source_uid,
            "product": {
                "name": PRODUCT_NAME,
                "vendor_name": VENDOR_NAME,
                "version": bundle_version,
            },
        },
        "unmapped": {
            "score": scored.score,
            "threshold": scored.threshold,
            "source_class_uid": scored.class_uid,
            "nearest_baseline": [{"uid": n, "distance": d} for n, d in scored.neighbors],
            "explanation": [r.as_dict() for r in reasons],
            "source": {
                "shard_id": shard_id,
                "sequence_number": sequence_number,
                "sub_index": sub_index,
            },
        },
    }


# What SQS accepts in a message (and so SNS delivers to a queue): #x9, #xA, #xD, #x20 to
# #xD7FF, #xE000 to #xFFFD, #x10000 to #x10FFFF. JSON escapes the controls itself; what is
# left (U+FFFE, U+FFFF, lone surrogates) can only be inside strings, where \uXXXX is the
# same value.
_SQS_REFUSED = re.compile(r"[\ud800-\udfff\ufffe\uffff]")


def encoded(value: Any) -> bytes:
    """Compact JSON that SQS, SNS and EventBridge all accept, for findings and quarantine
    messages. Events keep integers beyond 64 bits and lone surrogates exactly as they
    came; orjson refuses those, so the few messages that carry one take the standard
    library. Characters SQS refuses are written as JSON escapes (the same value).
    """
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if _SQS_REFUSED.search(text):
        text = _SQS_REFUSED.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text.encode("utf-8")


def fit_finding(finding: dict[str, Any], limit: int = MAX_FINDING_BYTES) -> tuple[dict, bytes]:
    """The finding and its JSON, trimmed to at most ``limit`` bytes; never dropped.

    Trimming removes the evidence's largest non-identity fields first; if the identity
    fields alone are still too large, the evidence keeps only class_uid, time and
    metadata.uid. A trimmed finding carries ``unmapped.ocsf_detect_trimmed: true`` and
    the dropped field names in ``unmapped.ocsf_detect_trimmed_fields``. If it is still
    too large, or has no evidence to trim (a group's closing update), every long text in
    it is bounded (``limits.bounded``) and ``unmapped.ocsf_detect_trimmed_texts`` counts
    them: what a finding quotes of an event (an alert group's entity, an explanation's
    value) is the sender's choice of length.
    """
    body = encoded(finding)
    if len(body) <= limit:
        return finding, body
    unmapped = dict(finding.get("unmapped") or {})
    trimmed = {**finding, "unmapped": unmapped}
    unmapped["ocsf_detect_trimmed"] = True
    evidences = finding.get("evidences")
    if isinstance(evidences, list) and evidences and isinstance(evidences[0], Mapping):
        body = _trim_evidence(trimmed, evidences[0].get("data"), len(body), limit)
        if len(body) <= limit:
            return trimmed, body
    texts = [0]
    for key, value in list(trimmed.items()):
        if key != "metadata":  # this finding's own uids: short, and never to be altered
            trimmed[key] = _bounded_texts(value, texts)
    unmapped = trimmed["unmapped"]
    unmapped["ocsf_detect_trimmed_texts"] = texts[0]
    body = encoded(trimmed)
    if len(body) > limit:  # only a limit smaller than the finding's own skeleton
        raise ValueError(f"a finding cannot be trimmed below {len(body)} bytes (limit {limit})")
    return trimmed, body


def _trim_evidence(trimmed: dict[str, Any], evidence: Any, size: int, limit: int) -> bytes:
    """Trim ``trimmed``'s evidence (a copy of ``evidence``) in place, largest non-identity
    fields first, down to its bare identity if need be; the finding's JSON after it."""
    data: dict[str, Any] = dict(evidence) if isinstance(evidence, Mapping) else {}
    unmapped = trimmed["unmapped"]
    dropped: list[str] = []
    trimmed["evidences"] = [{"data": data}]
    unmapped["ocsf_detect_trimmed_fields"] = dropped
    sizes = sorted(
        ((len(encoded(v)), k) for k, v in data.items() if k not in IDENTITY_FIELDS),
        reverse=True,
    )
    overshoot = size - limit
    for field_size, key in sizes:
        del data[key]
        dropped.append(key)
        overshoot -= field_size
        # 200 bytes of slack: the marker fields themselves take room.
        if overshoot + 200 + 8 * len(dropped) + sum(len(k) for k in dropped) <= 0:
            body = encoded(trimmed)
            if len(body) <= limit:
                return body
            overshoot = len(body) - limit
    body = encoded(trimmed)
    if len(body) <= limit:
        return body
    # Identity fields alone are too large (e.g. a huge metadata): keep the bare identity.
    minimal: dict[str, Any] = {k: data[k] for k in ("class_uid", "time") if k in data}
    uid = event_uid_of(data)
    if uid is not None:
        minimal["metadata"] = {"uid": uid}
    dropped.extend(sorted(k for k in data if k not in minimal))
    trimmed["evidences"] = [{"data": minimal}]
    unmapped["ocsf_detect_trimmed_fields"] = sorted(set(dropped))
    body = encoded(trimmed)
    if len(body) > limit:  # a huge metadata.uid: the record's shard/sequence still identify it
        minimal.pop("metadata", None)
        trimmed["metadata"] = {**trimmed["metadata"], "correlation_uid": None}
        body = encoded(trimmed)
    return body


def _bounded_texts(value: Any, count: list[int]) -> Any:
    """``value`` with every string (and key) longer than ``MAX_SHOWN_CHARS`` bounded;
    ``count[0]`` counts them."""
    if isinstance(value, str):
        if len(value) > MAX_SHOWN_CHARS:
            count[0] += 1
            return bounded(value)
        return value
    if isinstance(value, Mapping):
        return {_bounded_texts(k, count): _bounded_texts(v, count) for k, v in value.items()}
    if isinstance(value, list):
        return [_bounded_texts(v, count) for v in value]
    return value
