"""The prediction API's edges: the feedback bucket (verdicts and the overlay).

Built once per execution environment from the settings; ``reset`` forgets them (tests).
The bundle itself is loaded by ``service.get_detector`` (``ocsf_detect.bundlefetch``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ocsf_detect.feedback import S3FeedbackStore


def _client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=10, retries={"mode": "standard"})
    return boto3.session.Session().client(service, config=config)


@lru_cache(maxsize=4)
def get_feedback_store(bucket: str | None) -> S3FeedbackStore | None:
    """The store of the feedback bucket (``ApiSettings.feedback_bucket``), built once;
    None when no feedback bucket is configured."""
    return S3FeedbackStore(_client("s3"), bucket) if bucket else None


def reset() -> None:
    get_feedback_store.cache_clear()
