"""The prediction API's edges: the AWS clients (the feedback bucket, the alert-state
table) and the time a request has for them.

Built once per execution environment from the settings; ``reset`` forgets them (tests).
The bundle itself is loaded by ``service.get_detector`` (``ocsf_detect.bundlefetch``).

**Every call fits in the request.** The function answers within its timeout (15 s; API
Gateway waits 29 s), and a client's worst case, its attempts times the connect and read
timeouts plus back-off, is longer than that. A stalled bucket or table would then run the
function out of time: API Gateway's own 5xx, not the documented 503. So the handler
starts a *deadline* for each request (``start_request``: the context's remaining time
less ``RESERVE_S``, for a retry's back-off and the answer), and each client checks it
before every attempt, retries included: an attempt that could outlast it if it got no
answer (its connect + read timeout) is not made, and the call fails with
``OutOfTimeError``, a ``BotoCoreError`` that each route maps to its 503 as any other
failure of the bucket or the table. (The read timeout bounds each wait for bytes, so an
answer that trickles in could still take longer; a stalled service cannot.) The bundle's
own download, when the bundle comes from S3 rather than the layer and a request loads
it, keeps to the deadline too: its GET is checked as any other call, and each read of
the object's body (a MiB at a time) is made only with ``deadline.BUNDLE_READ_S`` left, so a
stalled download, or one not done when that little of the request is left, is a 503
``bundle_unavailable`` whose partial file is deleted (the next request starts again: a
bundle too large to download within one request belongs in the layer, or is loaded at
init, ``OCSF_DETECT_LOAD_BUNDLE_AT_INIT``, where no deadline applies).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ocsf_detect import deadline
from ocsf_detect.alertstate import DynamoRuleTable
from ocsf_detect.deadline import OutOfTimeError, before_bundle_read
from ocsf_detect.feedback import S3FeedbackStore

__all__ = ["OutOfTimeError", "before_bundle_read"]

# Of the function's time, kept after the deadline: botocore's back-off before a retry
# (standard mode, three attempts: at most 2 s) comes before the check of that retry, and
# then the answer is sent.
RESERVE_S = 3.0


def start_request(remaining_ms: int) -> None:
    """The deadline of the request now starting: ``remaining_ms`` is the context's."""
    deadline.start(remaining_ms, RESERVE_S)


def end_request() -> None:
    deadline.end()


def caller_of(event: Any) -> str | None:
    """Who sent the request, as API Gateway authenticated it: the caller's IAM ARN under
    SigV4, ``api-key:<id>`` under API keys; None when neither is there (a local server)."""
    identity = getattr(getattr(event, "request_context", None), "identity", None)
    if identity is None:
        return None
    arn = getattr(identity, "user_arn", None)
    if arn:
        return str(arn)
    key = getattr(identity, "api_key_id", None)
    return f"api-key:{key}" if key else None


def _client(service: str, *, connect_s: float, read_s: float, attempts: int) -> Any:
    return deadline.bounded_client(service, connect_s=connect_s, read_s=read_s, attempts=attempts)


@lru_cache(maxsize=4)
def get_feedback_store(bucket: str | None) -> S3FeedbackStore | None:
    """The store of the feedback bucket (``ApiSettings.feedback_bucket``), built once;
    None when no feedback bucket is configured. Verdicts are written with retries; the
    overlay is read inside scoring requests, so its reads get one attempt of at most
    1 + 2 s each and the refresh a budget (``OverlaySource.fetch_budget_s``): a slow or
    unreachable S3 costs a request a few seconds and leaves the last overlay in place.
    Both clients keep to the request's deadline (the module docstring)."""
    if not bucket:
        return None
    writes = _client("s3", connect_s=2, read_s=5, attempts=3)
    reads = _client("s3", connect_s=1, read_s=2, attempts=1)
    return S3FeedbackStore(writes, bucket, read_client=reads)


@lru_cache(maxsize=4)
def get_rule_table(name: str) -> DynamoRuleTable:
    """The suppression rules in the alert-state table ``name``, built once. DynamoDB
    answers in milliseconds; an attempt gets 1 + 3 s, three attempts, within the
    request's deadline."""
    return DynamoRuleTable(_client("dynamodb", connect_s=1, read_s=3, attempts=3), name)


@lru_cache(maxsize=1)
def get_bundle_client() -> Any:
    """The S3 client that downloads an ``s3://`` bundle (``deadline.bundle_client``), built
    once; its calls keep to the request's deadline (none at init, where Lambda's init
    phase bounds them)."""
    return deadline.bundle_client()


def reset() -> None:
    get_bundle_client.cache_clear()
    get_feedback_store.cache_clear()
    get_rule_table.cache_clear()
    end_request()
