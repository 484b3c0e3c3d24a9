"""OCSF event classes the detector knows by name, and the ones it scores."""

from __future__ import annotations

from typing import Final

NETWORK_ACTIVITY: Final = 4001
DNS_ACTIVITY: Final = 4003
AUTHENTICATION: Final = 3002
API_ACTIVITY: Final = 6003
HTTP_ACTIVITY: Final = 4002
PROCESS_ACTIVITY: Final = 1007
ACCOUNT_CHANGE: Final = 3001
FILE_SYSTEM_ACTIVITY: Final = 1001
DETECTION_FINDING: Final = 2004

# The classes with a curated feature spec. A bundle may score others too, on specs
# derived at train: what a bundle scores is the list of its models (manifest.classes).
SUPPORTED_CLASSES: Final = frozenset(
    {
        NETWORK_ACTIVITY,
        DNS_ACTIVITY,
        AUTHENTICATION,
        API_ACTIVITY,
        HTTP_ACTIVITY,
        PROCESS_ACTIVITY,
        ACCOUNT_CHANGE,
        FILE_SYSTEM_ACTIVITY,
    }
)

# The OCSF 1.x core event classes (schema.ocsf.io), so that an event of a class without a
# model is named in outcomes; the scored ones are above.
OCSF_CLASS_NAMES: Final[dict[int, str]] = {
    0: "Base Event",
    1001: "File System Activity",
    1002: "Kernel Extension Activity",
    1003: "Kernel Activity",
    1004: "Memory Activity",
    1005: "Module Activity",
    1006: "Scheduled Job Activity",
    1007: "Process Activity",
    1008: "Event Log Activity",
    1009: "Script Activity",
    2001: "Security Finding",
    2002: "Vulnerability Finding",
    2003: "Compliance Finding",
    2004: "Detection Finding",
    2005: "Incident Finding",
    2006: "Data Security Finding",
    2007: "Application Security Posture Finding",
    3001: "Account Change",
    3002: "Authentication",
    3003: "Authorize Session",
    3004: "Entity Management",
    3005: "User Access Management",
    3006: "Group Management",
    4001: "Network Activity",
    4002: "HTTP Activity",
    4003: "DNS Activity",
    4004: "DHCP Activity",
    4005: "RDP Activity",
    4006: "SMB Activity",
    4007: "SSH Activity",
    4008: "FTP Activity",
    4009: "Email Activity",
    4010: "Network File Activity",
    4011: "Email File Activity",
    4012: "Email URL Activity",
    4013: "NTP Activity",
    4014: "Tunnel Activity",
    5001: "Device Inventory Info",
    5002: "Device Config State",
    5003: "User Inventory Info",
    5004: "Operating System Patch State",
    5006: "Kernel Object Query",
    5007: "File Query",
    5008: "Folder Query",
    5009: "Admin Group Query",
    5010: "Job Query",
    5011: "Module Query",
    5012: "Network Connection Query",
    5013: "Networks Query",
    5014: "Peripheral Device Query",
    5015: "Process Query",
    5016: "Service Query",
    5017: "User Session Query",
    5018: "User Query",
    5019: "Device Config State Change",
    5020: "Software Inventory Info",
    5021: "OSINT Inventory Info",
    5023: "Cloud Resources Inventory Info",
    6001: "Web Resources Activity",
    6002: "Application Lifecycle",
    6003: "API Activity",
    6004: "Web Resource Access Activity",
    6005: "Datastore Activity",
    6006: "File Hosting Activity",
    6007: "Scan Activity",
    6008: "Application Error",
    7001: "Remediation Activity",
    7002: "File Remediation Activity",
    7003: "Process Remediation Activity",
    7004: "Network Remediation Activity",
}

CLASS_NAMES: Final[dict[int, str]] = {
    NETWORK_ACTIVITY: "Network Activity",
    DNS_ACTIVITY: "DNS Activity",
    AUTHENTICATION: "Authentication",
    API_ACTIVITY: "API Activity",
    DETECTION_FINDING: "Detection Finding",
}


def class_name(class_uid: int) -> str:
    """The OCSF name of a class; ``class N`` for one outside the core schema (an
    extension's class, or a number no schema defines)."""
    return CLASS_NAMES.get(class_uid) or OCSF_CLASS_NAMES.get(class_uid, f"class {class_uid}")
