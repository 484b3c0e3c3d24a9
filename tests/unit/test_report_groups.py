"""The demo's and the report's table of alert groups, from the messages a subscriber got."""

from __future__ import annotations

from typing import Any

from ocsf_detect_tools.report import group_rows


def _message(count: int, explanation: list[dict[str, Any]] | None) -> dict[str, Any]:
    unmapped: dict[str, Any] = {
        "group": {
            "uid": "g-1",
            "count": count,
            "first_seen_time": 1_741_939_200_000,
            "source_class_uid": 4001,
            "entity": "src_endpoint.ip=10.0.0.5",
            "max_score_ratio": 1.4,
        }
    }
    if explanation is not None:
        unmapped["explanation"] = explanation
    return {"severity": "High", "unmapped": unmapped}


def test_a_closed_group_shows_why_its_latest_explained_anomaly_fired() -> None:
    opening = _message(1, [{"text": "bytes_out 2.1 GB, typical 40 KB"}])
    update = _message(3, [{"text": "dst_endpoint.ip 203.0.113.9 never seen in the baseline"}])
    closing = _message(5, None)  # the window closed: figures only
    (row,) = group_rows([opening, closing, update], labels=None)
    assert row["anomalies"] == 5
    assert row["why"] == "dst_endpoint.ip 203.0.113.9 never seen in the baseline"


def test_a_group_without_any_explanation_says_so() -> None:
    (row,) = group_rows([_message(2, None)], labels=None)
    assert row["why"] == "-"
