"""Full pydantic models of the OCSF objects the supported classes use.

The hot path does not use these (it validates only the fields features read, see
``features.plan``); they document the shapes, type the API, and serve as the
"plain json.loads + full pydantic model" reference in ``ocsf-detect bench``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Object(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class Product(_Object):
    name: str | None = None
    vendor_name: str | None = None
    version: str | None = None


class Metadata(_Object):
    version: str | None = None
    uid: str | None = None
    product: Product | None = None
    log_name: str | None = None
    profiles: list[str] | None = None


class Endpoint(_Object):
    ip: str | None = None
    port: int | None = None
    hostname: str | None = None
    name: str | None = None
    uid: str | None = None
    mac: str | None = None
    domain: str | None = None


class ConnectionInfo(_Object):
    protocol_num: int | None = None
    protocol_name: str | None = None
    protocol_ver_id: int | None = None
    direction_id: int | None = None
    direction: str | None = None
    flag_history: str | None = None
    tcp_flags: int | None = None
    uid: str | None = None


class Traffic(_Object):
    bytes: int | None = None
    bytes_in: int | None = None
    bytes_out: int | None = None
    packets: int | None = None
    packets_in: int | None = None
    packets_out: int | None = None
    bytes_missed: int | None = None


class User(_Object):
    name: str | None = None
    uid: str | None = None
    type_id: int | None = None
    type: str | None = None


class BaseEvent(_Object):
    class_uid: int
    time: int
    activity_id: int | None = None
    activity_name: str | None = None
    category_uid: int | None = None
    category_name: str | None = None
    class_name: str | None = None
    type_uid: int | None = None
    type_name: str | None = None
    severity_id: int | None = None
    severity: str | None = None
    status_id: int | None = None
    status: str | None = None
    status_code: str | None = None
    message: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    duration: int | None = None
    metadata: Metadata | None = None
    unmapped: dict[str, Any] | None = None
    observables: list[dict[str, Any]] | None = None


class NetworkActivity(BaseEvent):
    src_endpoint: Endpoint | None = None
    dst_endpoint: Endpoint | None = None
    connection_info: ConnectionInfo | None = None
    traffic: Traffic | None = None
    app_name: str | None = None
    disposition_id: int | None = None
    action_id: int | None = None


class DnsQuery(_Object):
    hostname: str | None = None
    type: str | None = None
    class_: str | None = None


class DnsActivity(BaseEvent):
    query: DnsQuery | None = None
    answers: list[dict[str, Any]] | None = None
    rcode_id: int | None = None
    rcode: str | None = None
    src_endpoint: Endpoint | None = None
    dst_endpoint: Endpoint | None = None
    connection_info: ConnectionInfo | None = None


class Authentication(BaseEvent):
    user: User | None = None
    src_endpoint: Endpoint | None = None
    dst_endpoint: Endpoint | None = None
    auth_protocol_id: int | None = None
    logon_type_id: int | None = None
    is_mfa: bool | None = None
    is_remote: bool | None = None
