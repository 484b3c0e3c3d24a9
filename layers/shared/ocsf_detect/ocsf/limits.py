"""Input limits. Every limit has a reason next to it."""

from __future__ import annotations

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
