"""The prediction API's edges: the feedback bucket (verdicts and the overlay).

Built once per execution environment from the settings; ``reset`` forgets them (tests).
The bundle itself is loaded by ``service.get_detector`` (``ocsf_detect.bundlefetch``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ocsf_detect.feedback import S3FeedbackStore


def _client(service: str, *, connect_s: float, read_s: float, attempts: int) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_s,
        read_timeout=read_s,
        retries={"mode": "standard", "total_max_attempts": attempts},
    )
    return boto3.session.Session().client(service, config=config)


@lru_cache(maxsize=4)
def get_feedback_store(bucket: str | None) -> S3FeedbackStore | None:
    """The store of the feedback bucket (``ApiSettings.feedback_bucket``), built once;
    None when no feedback bucket is configured. Verdicts are written with retries; the
    overlay is read inside scoring requests (the function answers within 15 s), so its
    reads get one attempt of at most 1 + 2 s each and the refresh a budget
    (``OverlaySource.fetch_budget_s``): a slow or unreachable S3 costs a request a few
    seconds and leaves the last overlay in place."""
    if not bucket:
        return None
    writes = _client("s3", connect_s=2, read_s=5, attempts=3)
    reads = _client("s3", connect_s=1, read_s=2, attempts=1)
    return S3FeedbackStore(writes, bucket, read_client=reads)


def reset() -> None:
    get_feedback_store.cache_clear()
