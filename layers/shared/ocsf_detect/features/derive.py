"""Derived values: address scope, port class, string shape. Memoised per distinct value,
because real traffic repeats the same addresses, ports and names many times."""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from functools import lru_cache
from typing import Any, Final

ADDRESS_SCOPES: Final = (
    "private",
    "public",
    "loopback",
    "link_local",
    "multicast",
    "reserved",
    "unspecified",
    "invalid",
)
PORT_CLASSES: Final = ("well_known", "registered", "ephemeral", "invalid")


@lru_cache(maxsize=1 << 16)
def address_scope(value: Any) -> int:
    """Index into ADDRESS_SCOPES for an IP address (text or integer)."""
    try:
        ip = ipaddress.ip_address(value.strip() if isinstance(value, str) else value)
    except (ValueError, TypeError):
        return ADDRESS_SCOPES.index("invalid")
    if ip.is_unspecified:
        return ADDRESS_SCOPES.index("unspecified")
    if ip.is_loopback:
        return ADDRESS_SCOPES.index("loopback")
    if ip.is_link_local:
        return ADDRESS_SCOPES.index("link_local")
    if ip.is_multicast:
        return ADDRESS_SCOPES.index("multicast")
    if ip.is_private:
        return ADDRESS_SCOPES.index("private")
    if ip.is_reserved or not ip.is_global:
        return ADDRESS_SCOPES.index("reserved")
    return ADDRESS_SCOPES.index("public")


def port_class(value: Any) -> int:
    """Index into PORT_CLASSES (IANA ranges) for a port number."""
    try:
        port = int(value)
    except (ValueError, TypeError, OverflowError):
        return 3
    if port < 0 or port > 65535:
        return 3
    if port < 1024:
        return 0
    if port < 49152:
        return 1
    return 2


TEXT_STATS: Final = ("length", "labels", "entropy", "digit_share")


@lru_cache(maxsize=1 << 16)
def text_stats(value: Any) -> tuple[float, float, float, float]:
    """(log1p length, number of dot-separated labels, Shannon entropy in bits per
    character, share of digits) of a string."""
    text = value if isinstance(value, str) else str(value)
    n = len(text)
    if n == 0:
        return (0.0, 0.0, 0.0, 0.0)
    counts = Counter(text)
    entropy = -sum((c / n) * math.log2(c / n) for c in counts.values())
    digits = sum(c for ch, c in counts.items() if ch.isdigit())
    labels = text.strip(".").count(".") + 1
    return (math.log1p(n), float(labels), entropy, digits / n)
