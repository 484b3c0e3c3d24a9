"""Detection Findings: shape, deterministic uid, risk score, trimming to the size limit."""

from __future__ import annotations

import json
import re

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocsf_detect.detector.scorer import NeighborTable, Scored
from ocsf_detect.findings import (
    FINDING_TYPE_UID,
    MAX_FINDING_BYTES,
    build_finding,
    encoded,
    finding_uid,
    fit_finding,
    risk_score,
)
from ocsf_detect.ocsf.outcomes import Parsed


def scored(event: dict | None = None, score: float = 2.0, threshold: float = 1.0) -> Scored:
    event = event or {
        "class_uid": 4001,
        "time": 1_730_000_000_000,
        "metadata": {"uid": "evt-1", "version": "1.1.0"},
        "src_endpoint": {"ip": "10.0.0.1"},
    }
    table = NeighborTable(np.array([[0]]), np.array([[0.5]]), ["b-1"])
    return Scored(
        4001, 1_730_000_000_000, score, threshold, True, 4, Parsed(4001, 1, (), event), table, 0
    )


def test_finding_has_the_ocsf_detection_finding_shape():
    finding = build_finding(
        scored(), bundle_version="v7", created_ms=1, shard_id="shardId-0", sequence_number="42"
    )
    assert (finding["class_uid"], finding["category_uid"], finding["activity_id"]) == (2004, 2, 1)
    assert finding["type_uid"] == FINDING_TYPE_UID == 200401
    assert finding["finding_info"]["analytic"] == {
        "type_id": 4,
        "type": "Learning (ML/DL)",
        "name": "ocsf-detect",
        "uid": "ocsf-detect:4001",
        "version": "v7",
    }
    # the finding is written in the schema version this library emits, not the source's
    assert finding["metadata"]["version"] == "1.3.0"
    assert finding["evidences"][0]["data"]["metadata"]["version"] == "1.1.0"
    assert finding["metadata"]["uid"] == finding["finding_info"]["uid"]
    assert finding["severity_id"] == 4
    assert finding["severity"] == "High"
    assert finding["evidences"][0]["data"]["metadata"]["uid"] == "evt-1"
    assert finding["unmapped"]["nearest_baseline"] == [{"uid": "b-1", "distance": 0.5}]
    assert finding["risk_score"] == 100


def test_the_uid_names_the_event_in_the_stream_whatever_the_bundle():
    a = finding_uid(shard_id="s", sequence_number="1", sub_index=0, event_uid=None)
    assert a == finding_uid(shard_id="s", sequence_number="1", sub_index=0, event_uid="x")
    assert a != finding_uid(shard_id="s", sequence_number="2", sub_index=0, event_uid=None)
    assert a != finding_uid(shard_id="s", sequence_number="1", sub_index=1, event_uid=None)
    assert a != finding_uid(shard_id="t", sequence_number="1", sub_index=0, event_uid=None)
    # Without a sequence number the event's own uid identifies the source.
    b = finding_uid(shard_id=None, sequence_number=None, event_uid="e")
    assert b == finding_uid(shard_id=None, sequence_number=None, event_uid="e")
    with pytest.raises(ValueError, match="sequence number"):
        finding_uid(shard_id=None, sequence_number=None, event_uid=None)


def test_the_bundle_version_is_in_the_metadata_not_the_uid():
    one, two = (
        build_finding(
            scored(), bundle_version=v, created_ms=1, shard_id="s", sequence_number="7", sub_index=2
        )
        for v in ("v1", "v2")
    )
    assert one["finding_info"]["uid"] == two["finding_info"]["uid"]
    assert (one["metadata"]["product"]["version"], two["metadata"]["product"]["version"]) == (
        "v1",
        "v2",
    )
    assert one["unmapped"]["source"] == {"shard_id": "s", "sequence_number": "7", "sub_index": 2}


@pytest.mark.parametrize(
    ("score", "threshold", "expected"), [(0.0, 1.0, 0), (1.0, 1.0, 50), (3.0, 1.0, 100)]
)
def test_risk_score_is_the_threshold_ratio_on_0_to_100(score, threshold, expected):
    assert risk_score(score, threshold) == expected


def test_small_finding_is_not_trimmed():
    finding = build_finding(scored(), bundle_version="v", created_ms=1, sequence_number="1")
    fitted, body = fit_finding(finding)
    assert fitted is finding
    assert orjson.loads(body) == finding
    assert "ocsf_detect_trimmed" not in fitted["unmapped"]


def test_oversized_finding_is_trimmed_keeping_identity_fields():
    event = {
        "class_uid": 4001,
        "time": 1,
        "metadata": {"uid": "big-1"},
        "unmapped": {"blob": "x" * 400_000},
        "raw_data": "y" * 100_000,
        "src_endpoint": {"ip": "10.0.0.1"},
    }
    finding = build_finding(scored(event), bundle_version="v", created_ms=1, sequence_number="9")
    fitted, body = fit_finding(finding)
    assert len(body) <= MAX_FINDING_BYTES
    data = fitted["evidences"][0]["data"]
    assert data["class_uid"] == 4001
    assert data["metadata"]["uid"] == "big-1"
    assert "unmapped" not in data
    assert "src_endpoint" in data
    assert fitted["unmapped"]["ocsf_detect_trimmed"] is True
    assert "unmapped" in fitted["unmapped"]["ocsf_detect_trimmed_fields"]
    assert fitted["finding_info"]["uid"] == finding["finding_info"]["uid"]


def test_huge_identity_field_still_fits():
    event = {"class_uid": 4001, "time": 1, "metadata": {"uid": "m", "labels": ["z" * 300_000]}}
    finding = build_finding(scored(event), bundle_version="v", created_ms=1, sequence_number="9")
    fitted, body = fit_finding(finding)
    assert len(body) <= MAX_FINDING_BYTES
    assert fitted["evidences"][0]["data"] == {
        "class_uid": 4001,
        "time": 1,
        "metadata": {"uid": "m"},
    }


SQS_ALLOWED = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, exclude_categories=[])), st.integers())
def test_encoded_json_holds_only_what_sqs_accepts_and_means_the_same(text, number):
    value = {"message": text, "field": f"unmapped.{text}", "n": number, "list": [text]}
    body = encoded(value).decode("utf-8")  # valid UTF-8: no lone surrogate left raw
    assert SQS_ALLOWED.fullmatch(body), body
    assert json.loads(body) == value


def test_the_characters_sqs_refuses_are_escaped():
    body = encoded({"k": "\uffff\ufffe\ud800 ok \U0001f600"})
    assert body == b'{"k":"\\uffff\\ufffe\\ud800 ok \xf0\x9f\x98\x80"}'


def test_a_finding_without_evidence_fits_by_bounding_its_long_texts():
    # A group's closing update carries no evidence: what can make it too large is what it
    # quotes of the events (an entity, an explanation's values)
    entity = "src_endpoint.ip=" + "é" * 65_536
    finding = {
        "class_uid": 2004,
        "metadata": {"uid": "n-1", "version": "1.3.0"},
        "finding_info": {"uid": "g-1", "title": f"activity: {entity}", "desc": f"of {entity}"},
        "unmapped": {"group": {"entity": entity}, "explanation": [{"value": "v" * 200_000}]},
    }
    fitted, body = fit_finding(finding)
    assert len(body) <= MAX_FINDING_BYTES
    assert fitted["unmapped"]["ocsf_detect_trimmed"] is True
    assert fitted["unmapped"]["ocsf_detect_trimmed_texts"] == 4
    assert fitted["metadata"] == finding["metadata"]
    assert fitted["finding_info"]["uid"] == "g-1"
    # bounded texts stay recognisable, and two that differ stay different
    assert fitted["unmapped"]["group"]["entity"].startswith("src_endpoint.ip=ééé")
    other = {**finding, "unmapped": {"group": {"entity": entity[:-1] + "e"}}}
    assert fit_finding(other)[0]["unmapped"]["group"] != fitted["unmapped"]["group"]
