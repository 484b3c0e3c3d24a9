"""OCSF event classes the detector knows by name, and the ones it scores."""

from __future__ import annotations

from typing import Final

NETWORK_ACTIVITY: Final = 4001
DNS_ACTIVITY: Final = 4003
AUTHENTICATION: Final = 3002
API_ACTIVITY: Final = 6003
DETECTION_FINDING: Final = 2004

SUPPORTED_CLASSES: Final = frozenset({NETWORK_ACTIVITY, DNS_ACTIVITY, AUTHENTICATION, API_ACTIVITY})

CLASS_NAMES: Final[dict[int, str]] = {
    NETWORK_ACTIVITY: "Network Activity",
    DNS_ACTIVITY: "DNS Activity",
    AUTHENTICATION: "Authentication",
    API_ACTIVITY: "API Activity",
    DETECTION_FINDING: "Detection Finding",
}


def class_name(class_uid: int) -> str:
    return CLASS_NAMES.get(class_uid, f"class {class_uid}")
