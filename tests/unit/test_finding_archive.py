"""The findings archive's adapter: concurrent puts, each refusal reported at its position,
and an exception only when nothing was stored (the stream fails those records)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from stream_scoring.adapters import S3FindingArchive

from ocsf_detect.stream import ArchivedFinding


class FakeS3:
    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        self.keys: list[str] = []
        self.lock = threading.Lock()

    def put_object(self, **kwargs: Any) -> None:
        if any(uid in kwargs["Key"] for uid in self.refuse):
            raise RuntimeError(f"refused {kwargs['Key']}")
        with self.lock:
            self.keys.append(kwargs["Key"])


def findings(n: int) -> list[ArchivedFinding]:
    return [ArchivedFinding(f"f-{i}", b"{}", 1_767_225_600_000, group_uid="g-1") for i in range(n)]


def test_every_finding_is_put_and_each_refusal_is_reported_at_its_position() -> None:
    s3 = FakeS3(refuse={"f-3", "f-7"})
    refused = S3FindingArchive(s3, "bucket").put(findings(12))
    assert [r.position for r in refused] == [3, 7]
    assert {r.code for r in refused} == {"RuntimeError"}
    assert sorted(s3.keys) == sorted(
        f"withheld/2026/01/01/g-1/f-{i}.json" for i in range(12) if i not in (3, 7)
    )


def test_nothing_stored_raises_and_nothing_to_store_is_no_call() -> None:
    archive = S3FindingArchive(FakeS3(refuse={"f-"}), "bucket")
    with pytest.raises(RuntimeError, match="refused"):
        archive.put(findings(3))
    assert archive.put([]) == []
