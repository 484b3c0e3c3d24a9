"""Input limits. Every limit has a reason next to it."""

from __future__ import annotations

import hashlib
from typing import Final

MAX_EVENT_BYTES: Final = 1024 * 1024
"""Kinesis' own record cap (1 MiB): nothing larger can arrive through the stream."""

MAX_NESTING_DEPTH: Final = 64
"""Real OCSF events nest about 6 levels; 64 leaves room for producers' `unmapped` trees
while keeping hostile inputs (deep arrays) out of alerts and downstream consumers."""

MIN_PLAUSIBLE_MS: Final = 100_000_000_000
"""Timestamps below this (1973 in ms, year 5138 in s) are taken to be epoch seconds:
some producers emit seconds although OCSF's timestamp_t is milliseconds."""

MAX_PLAUSIBLE_MS: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: a later timestamp is a corrupt value, not a time."""

MAX_SHOWN_CHARS: Final = 256
"""A field value quoted in a finding's text, an explanation or an alert group's entity.
Values are what senders chose (a 60,000-character "IP address" parses), and one quoted
in several places of a finding, and kept in the alert table's item, must not push either
past its size cap (256 KiB per message, 400 KB per DynamoDB item). The event itself is in
the finding's evidence; what quotes it needs only to be recognisable and distinct."""


def bounded(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text`` itself when at most ``limit`` characters, else its start and a digest of
    the whole, so that two long values that differ anywhere stay two different texts.

    >>> bounded("10.0.0.1")
    '10.0.0.1'
    >>> long = bounded("A" * 60_000)
    >>> len(long) <= MAX_SHOWN_CHARS, long.endswith("(60000 chars sha256:f7c65dd635741ecb)")
    (True, True)
    """
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    tail = f"... ({len(text)} chars sha256:{digest})"
    return text[: max(0, limit - len(tail))] + tail
