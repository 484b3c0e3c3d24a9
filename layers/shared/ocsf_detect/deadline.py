"""The time an invocation (or an API request) has for its AWS calls.

A handler starts a *deadline* when its work starts (``start``: the context's remaining
time less a reserve for what comes after the last call) and ends it when done. A client
made by ``bounded_client`` checks it before every attempt, retries included: an attempt
that could outlast it if it got no answer (its connect + read timeout) is not made, and
the call fails with ``OutOfTimeError``, a ``BotoCoreError`` the caller handles as any
other failure of that service. ``check`` does the same for a wait the caller makes
itself (one read of a downloaded object's body). Outside a deadline (init, tests)
nothing is refused. The deadline is a context variable: a local server's threads each
keep their own.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError

# monotonic seconds; None outside a deadline
_deadline: ContextVar[float | None] = ContextVar("ocsf_detect_deadline", default=None)


class OutOfTimeError(BotoCoreError):
    """An AWS call not attempted: the time left would not cover its worst case."""

    fmt = (
        "{operation} not attempted: {left_s:.1f} s left of the invocation, an attempt may "
        "take {attempt_s:g} s"
    )


def start(remaining_ms: int, reserve_s: float) -> None:
    """The deadline of the work now starting: ``remaining_ms`` is the Lambda context's
    remaining time, ``reserve_s`` what is kept after the last call."""
    _deadline.set(time.monotonic() + remaining_ms / 1000.0 - reserve_s)


def end() -> None:
    _deadline.set(None)


def current() -> float | None:
    """The deadline in force (monotonic seconds), None outside one."""
    return _deadline.get()


def check(attempt_s: float, event_name: str = "", **_: Any) -> None:
    """Refuse a wait of up to ``attempt_s`` that could outlast the deadline (botocore's
    ``before-send`` hook has this signature)."""
    deadline = _deadline.get()
    if deadline is None:
        return
    left = deadline - time.monotonic()
    if left < attempt_s:
        operation = event_name.rsplit(".", 1)[-1] or "call"
        raise OutOfTimeError(operation=operation, left_s=max(left, 0.0), attempt_s=attempt_s)


def bounded_client(service: str, *, connect_s: float, read_s: float, attempts: int) -> Any:
    """A boto3 client of ``service`` whose every attempt keeps to the deadline."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_s,
        read_timeout=read_s,
        retries={"mode": "standard", "total_max_attempts": attempts},
    )
    client = boto3.session.Session().client(service, config=config)
    client.meta.events.register("before-send", partial(check, connect_s + read_s))
    return client


# An ``s3://`` bundle's download, by either function: an attempt gets 2 + 5 s (the read
# timeout is per read of the body, not for the whole object), three attempts, and each
# read of the body (``bundlefetch``, a MiB at a time) is made only with BUNDLE_READ_S left.
BUNDLE_CONNECT_S = 2.0
BUNDLE_READ_S = 5.0


def bundle_client() -> Any:
    """An S3 client for the bundle's download whose attempts keep to the deadline."""
    return bounded_client("s3", connect_s=BUNDLE_CONNECT_S, read_s=BUNDLE_READ_S, attempts=3)


def before_bundle_read() -> None:
    """Called before each read of the bundle's body: a read that could outlast the
    deadline (no byte for ``BUNDLE_READ_S``) is not made (``OutOfTimeError``)."""
    check(BUNDLE_READ_S, event_name="bundle download")
