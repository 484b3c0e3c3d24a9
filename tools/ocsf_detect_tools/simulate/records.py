"""OCSF 1.3 records as the organisation's sensors would log them.

Shared by the benign traffic and the attack injectors, so both produce exactly the same
shapes: Zeek ``conn`` and ``dns`` logs mapped to Network Activity (4001) and DNS Activity
(4003), and Windows, OpenSSH, VPN and identity-provider logons mapped to Authentication
(3002). Every random choice comes from the ``random.Random`` handed in.
"""

from __future__ import annotations

import random
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

OCSF_VERSION: Final = "1.3.0"


@dataclass(frozen=True, slots=True)
class EventClass:
    uid: int
    name: str
    category_uid: int
    category_name: str
    activities: Mapping[int, str]


NETWORK_ACTIVITY: Final = EventClass(
    4001, "Network Activity", 4, "Network Activity",
    {1: "Open", 2: "Close", 3: "Reset", 4: "Fail", 5: "Refuse", 6: "Traffic"},
)  # fmt: skip
DNS_ACTIVITY: Final = EventClass(
    4003, "DNS Activity", 4, "Network Activity", {1: "Query", 2: "Response", 6: "Traffic"}
)
AUTHENTICATION: Final = EventClass(
    3002, "Authentication", 3, "Identity & Access Management",
    {1: "Logon", 2: "Logoff", 3: "Authentication Ticket", 4: "Service Ticket Request"},
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Product:
    """The log source: ``metadata.product`` and ``metadata.log_name``."""

    name: str
    vendor_name: str
    log_name: str


ZEEK_CONN: Final = Product("Zeek", "Zeek Project", "conn")
ZEEK_DNS: Final = Product("Zeek", "Zeek Project", "dns")
WINDOWS_SECURITY: Final = Product("Microsoft Windows", "Microsoft", "Security")
OPENSSH: Final = Product("OpenSSH", "OpenBSD", "auth.log")
OPENVPN: Final = Product("OpenVPN Access Server", "OpenVPN", "openvpn")
OKTA: Final = Product("Okta", "Okta", "system_log")

SEVERITIES: Final = {1: "Informational", 2: "Low", 3: "Medium"}
DIRECTIONS: Final = {1: "Inbound", 2: "Outbound", 3: "Lateral"}
INBOUND: Final = 1
OUTBOUND: Final = 2
LATERAL: Final = 3
PROTOCOL_NUMBERS: Final = {"icmp": 1, "tcp": 6, "udp": 17}

# Zeek conn_state -> OCSF Network Activity activity_id.
STATUS_ACTIVITY: Final = {
    "SF": 2,  # normal establishment and termination: Close
    "S1": 1,  # established, not yet terminated: Open
    "OTH": 6,  # midstream traffic, no handshake seen: Traffic
    "SH": 6,
    "RSTO": 3,  # reset by the originator: Reset
    "RSTR": 3,
    "RSTOS0": 3,
    "S0": 4,  # SYN without any reply: Fail
    "REJ": 5,  # SYN answered by RST: Refuse
}

RCODES: Final = {0: "NoError", 1: "FormError", 2: "ServError", 3: "NXDomain", 5: "Refused"}
NOERROR: Final = 0
SERVFAIL: Final = 2
NXDOMAIN: Final = 3

AUTH_PROTOCOLS: Final = {
    0: "Unknown", 1: "NTLM", 2: "Kerberos", 3: "Digest", 4: "OpenID", 5: "SAML",
    6: "OAUTH 2.0", 7: "PAP", 8: "CHAP", 9: "EAP", 10: "RADIUS", 99: "Other",
}  # fmt: skip
LOGON_TYPES: Final = {
    0: "Unknown", 1: "System", 2: "Interactive", 3: "Network", 4: "Batch", 5: "OS Service",
    7: "Unlock", 8: "Network Cleartext", 9: "New Credentials", 10: "Remote Interactive",
    11: "Cached Interactive",
}  # fmt: skip
USER_TYPES: Final = {0: "Unknown", 1: "User", 2: "Admin", 3: "System"}

# Zeek uids are base62: fold base64's two extra symbols onto letters.
_ALNUM_ONLY: Final = bytes.maketrans(b"+/", b"Xq")
# RFC 4122 version 4: clear the version and variant bits, then set them to 4 and 10.
_UUID_KEEP: Final = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID_V4: Final = (0x4000 << 64) | (0x8000 << 48)


def endpoint(ip: str, port: int | None = None, hostname: str | None = None) -> dict[str, Any]:
    """An OCSF network endpoint object with only the fields that are known."""
    ep: dict[str, Any] = {"ip": ip}
    if port is not None:
        ep["port"] = port
    if hostname is not None:
        ep["hostname"] = hostname
    return ep


def direction_of(src_internal: bool, dst_internal: bool) -> int:
    """OCSF ``direction_id`` seen from the organisation's network."""
    if src_internal:
        return LATERAL if dst_internal else OUTBOUND
    return INBOUND


class EventFactory:
    """Builds OCSF events as dicts, drawing uids from the given random source."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def uid(self) -> str:
        """A random (version 4) UUID, reproducible from the random source."""
        # Same text as str(uuid.UUID(int=..., version=4)), at a fraction of the cost.
        bits = (self._rng.getrandbits(128) & _UUID_KEEP) | _UUID_V4
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def conn_uid(self) -> str:
        """A Zeek-style connection uid such as ``CHhAvVGS1DHFjwGM9`` (C + 16 alphanumerics)."""
        return "C" + b64encode(self._rng.randbytes(12)).translate(_ALNUM_ONLY).decode()

    def _base(
        self, cls: EventClass, activity_id: int, time_ms: int, product: Product, severity_id: int
    ) -> dict[str, Any]:
        activity_name = cls.activities[activity_id]
        return {
            "class_uid": cls.uid,
            "class_name": cls.name,
            "category_uid": cls.category_uid,
            "category_name": cls.category_name,
            "activity_id": activity_id,
            "activity_name": activity_name,
            "type_uid": cls.uid * 100 + activity_id,
            "type_name": f"{cls.name}: {activity_name}",
            "severity_id": severity_id,
            "severity": SEVERITIES[severity_id],
            "time": time_ms,
            "metadata": {
                "version": OCSF_VERSION,
                "uid": self.uid(),
                "product": {"name": product.name, "vendor_name": product.vendor_name},
                "log_name": product.log_name,
            },
        }

    def network(
        self,
        *,
        time_ms: int,
        src: dict[str, Any],
        dst: dict[str, Any],
        protocol: str,
        direction_id: int,
        status_code: str,
        bytes_out: int,
        bytes_in: int,
        packets_out: int,
        packets_in: int,
        duration_ms: int,
        history: str,
        app_name: str | None = None,
    ) -> dict[str, Any]:
        """A Zeek conn record as Network Activity; ``*_out`` counts what ``src`` sent."""
        event = self._base(
            NETWORK_ACTIVITY, STATUS_ACTIVITY[status_code], time_ms, ZEEK_CONN, severity_id=1
        )
        event["start_time"] = time_ms
        event["end_time"] = time_ms + duration_ms
        event["duration"] = duration_ms
        event["src_endpoint"] = src
        event["dst_endpoint"] = dst
        event["connection_info"] = {
            "uid": self.conn_uid(),
            "protocol_num": PROTOCOL_NUMBERS[protocol],
            "protocol_name": protocol,
            "direction_id": direction_id,
            "direction": DIRECTIONS[direction_id],
            "flag_history": history,
        }
        event["traffic"] = {
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "bytes": bytes_in + bytes_out,
            "packets_in": packets_in,
            "packets_out": packets_out,
            "packets": packets_in + packets_out,
        }
        event["status_code"] = status_code
        if app_name is not None:
            event["app_name"] = app_name
        return event

    def dns(
        self,
        *,
        time_ms: int,
        src_ip: str,
        src_port: int,
        resolver_ip: str,
        hostname: str,
        query_type: str,
        rcode_id: int,
        answers: list[dict[str, Any]],
        rtt_ms: int,
    ) -> dict[str, Any]:
        """A Zeek dns record (query and response in one) as DNS Activity: Traffic."""
        event = self._base(DNS_ACTIVITY, 6, time_ms, ZEEK_DNS, severity_id=1)
        txid = self._rng.randrange(65536)
        event["query"] = {
            "hostname": hostname,
            "type": query_type,
            "class": "IN",
            "opcode": "Query",
            "opcode_id": 0,
            "packet_uid": txid,
        }
        event["answers"] = answers
        event["rcode_id"] = rcode_id
        event["rcode"] = RCODES[rcode_id]
        event["src_endpoint"] = {"ip": src_ip, "port": src_port}
        event["dst_endpoint"] = {"ip": resolver_ip, "port": 53}
        event["connection_info"] = {
            "uid": self.conn_uid(),
            "protocol_num": 17,
            "protocol_name": "udp",
            "direction_id": LATERAL,
            "direction": DIRECTIONS[LATERAL],
        }
        event["response_time"] = time_ms + rtt_ms
        event["duration"] = rtt_ms
        return event

    def authentication(
        self,
        *,
        time_ms: int,
        product: Product,
        user_name: str,
        user_uid: str,
        user_type_id: int,
        src: dict[str, Any],
        dst: dict[str, Any],
        success: bool,
        auth_protocol_id: int,
        logon_type_id: int,
        is_mfa: bool,
        is_remote: bool,
        service: str,
        activity_id: int = 1,
        auth_protocol: str | None = None,
        status_detail: str | None = None,
    ) -> dict[str, Any]:
        """A logon (or logoff) as Authentication; ``auth_protocol`` names an "Other" (99)."""
        event = self._base(
            AUTHENTICATION, activity_id, time_ms, product, severity_id=1 if success else 2
        )
        event["user"] = {
            "name": user_name,
            "uid": user_uid,
            "type_id": user_type_id,
            "type": USER_TYPES[user_type_id],
        }
        event["src_endpoint"] = src
        event["dst_endpoint"] = dst
        event["status_id"] = 1 if success else 2
        event["status"] = "Success" if success else "Failure"
        if status_detail is not None:
            event["status_detail"] = status_detail
        event["auth_protocol_id"] = auth_protocol_id
        event["auth_protocol"] = auth_protocol or AUTH_PROTOCOLS[auth_protocol_id]
        event["logon_type_id"] = logon_type_id
        event["logon_type"] = LOGON_TYPES[logon_type_id]
        event["is_mfa"] = is_mfa
        event["is_remote"] = is_remote
        event["service"] = {"name": service}
        return event


def dns_answer(rdata: str, rtype: str, ttl: int) -> dict[str, Any]:
    return {"rdata": rdata, "type": rtype, "class": "IN", "ttl": ttl}


def tcp_packets(bytes_out: int, bytes_in: int) -> tuple[int, int]:
    """Packets each side sends for a completed TCP flow: handshake, segments and ACKs."""
    segs_out = -(-bytes_out // 1448)
    segs_in = -(-bytes_in // 1448)
    return 3 + segs_out + segs_in // 2, 2 + segs_in + segs_out // 2


def udp_packets(bytes_out: int, bytes_in: int) -> tuple[int, int]:
    return max(1, -(-bytes_out // 1200)), -(-bytes_in // 1200)
