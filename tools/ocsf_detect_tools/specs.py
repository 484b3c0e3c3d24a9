"""Curated feature specifications: written for the most common classes and sources.

A class without one still gets a model when the baseline holds enough of its events:
its spec is then derived at train from the data and the OCSF schema (``derived_specs``).

Every field here is optional in real data: absent values become explicit missing values.
A TOML config (``ocsf_detect_tools.config``) can add, drop or replace features per class.
"""

from __future__ import annotations

from ocsf_detect.features.spec import (
    AddressFeature,
    CategoricalFeature,
    ClassSpec,
    CountFeature,
    Feature,
    HashedFeature,
    HourFeature,
    NovelAmountFeature,
    NumericFeature,
    PortFeature,
    RatioFeature,
    TextFeature,
)
from ocsf_detect.ocsf.classes import (
    ACCOUNT_CHANGE,
    API_ACTIVITY,
    AUTHENTICATION,
    DNS_ACTIVITY,
    FILE_SYSTEM_ACTIVITY,
    HTTP_ACTIVITY,
    NETWORK_ACTIVITY,
    PROCESS_ACTIVITY,
)


def _endpoint(prefix: str, side: str) -> list[Feature]:
    return [
        HashedFeature(name=f"{side}_ip", path=f"{prefix}.ip"),
        AddressFeature(name=f"{side}_scope", path=f"{prefix}.ip"),
    ]


def _network() -> ClassSpec:
    # The destination address x port pair is a service endpoint: a never-seen one is how
    # scans (many ports on known hosts) and C2 channels (a rare address on an odd port)
    # show up in a single flow. Source x port pairs are available through a config but
    # not a default: benign first-time pairs are common, they raise the threshold, and
    # on the generated traffic they sank beaconing recall.
    return ClassSpec(
        class_uid=NETWORK_ACTIVITY,
        features=[
            HourFeature(name="hour"),
            CategoricalFeature(name="activity", path="activity_id"),
            CategoricalFeature(name="protocol", path="connection_info.protocol_name"),
            CategoricalFeature(name="protocol_num", path="connection_info.protocol_num"),
            CategoricalFeature(name="direction", path="connection_info.direction_id"),
            CategoricalFeature(name="flag_history", path="connection_info.flag_history"),
            CategoricalFeature(name="status_code", path="status_code"),
            CategoricalFeature(name="app_name", path="app_name"),
            CategoricalFeature(name="disposition", path="disposition_id"),
            CategoricalFeature(name="dst_port", path="dst_endpoint.port", max_vocab=128),
            PortFeature(name="dst_port_class", path="dst_endpoint.port"),
            PortFeature(name="src_port_class", path="src_endpoint.port"),
            *_endpoint("src_endpoint", "src"),
            *_endpoint("dst_endpoint", "dst"),
            HashedFeature(name="dst_host", path="dst_endpoint.hostname"),
            HashedFeature(
                name="dst_service", path="dst_endpoint.ip", together_with="dst_endpoint.port"
            ),
            NumericFeature(name="bytes_in", path="traffic.bytes_in"),
            NumericFeature(name="bytes_out", path="traffic.bytes_out"),
            NumericFeature(name="packets_in", path="traffic.packets_in"),
            NumericFeature(name="packets_out", path="traffic.packets_out"),
            NumericFeature(name="duration", path="duration"),
            # Volume sent to a destination never or rarely seen: exfiltration in one flow.
            NovelAmountFeature(name="bytes_out_new_dst", path="traffic.bytes_out", of="dst_ip"),
            RatioFeature(
                name="bytes_out_share", path="traffic.bytes_out", other="traffic.bytes_in"
            ),
            RatioFeature(
                name="packets_out_share", path="traffic.packets_out", other="traffic.packets_in"
            ),
            RatioFeature(
                name="bytes_per_packet_out",
                path="traffic.bytes_out",
                other="traffic.packets_out",
                mode="per",
            ),
        ],
    )


def _dns() -> ClassSpec:
    return ClassSpec(
        class_uid=DNS_ACTIVITY,
        features=[
            HourFeature(name="hour"),
            CategoricalFeature(name="activity", path="activity_id"),
            CategoricalFeature(name="query_type", path="query.type"),
            CategoricalFeature(name="query_class", path="query.class"),
            CategoricalFeature(name="rcode", path="rcode_id"),
            CategoricalFeature(name="protocol", path="connection_info.protocol_name"),
            TextFeature(name="query_shape", path="query.hostname"),
            HashedFeature(name="query_name", path="query.hostname"),
            CountFeature(name="answers", path="answers"),
            *_endpoint("src_endpoint", "src"),
            HashedFeature(name="resolver", path="dst_endpoint.ip"),
        ],
    )


def _authentication() -> ClassSpec:
    return ClassSpec(
        class_uid=AUTHENTICATION,
        features=[
            HourFeature(name="hour"),
            CategoricalFeature(name="activity", path="activity_id"),
            CategoricalFeature(name="status", path="status_id"),
            CategoricalFeature(name="status_detail", path="status_detail"),
            CategoricalFeature(name="auth_protocol", path="auth_protocol_id"),
            CategoricalFeature(name="logon_type", path="logon_type_id"),
            CategoricalFeature(name="is_mfa", path="is_mfa"),
            CategoricalFeature(name="is_remote", path="is_remote"),
            CategoricalFeature(name="user_type", path="user.type_id"),
            CategoricalFeature(name="service", path="service.name"),
            HashedFeature(name="user", path="user.name"),
            HashedFeature(name="user_src", path="user.name", together_with="src_endpoint.ip"),
            HashedFeature(name="dst_host", path="dst_endpoint.hostname"),
            *_endpoint("src_endpoint", "src"),
        ],
    )


def _api() -> ClassSpec:
    return ClassSpec(
        class_uid=API_ACTIVITY,
        features=[
            HourFeature(name="hour"),
            CategoricalFeature(name="activity", path="activity_id"),
            CategoricalFeature(name="operation", path="api.operation", max_vocab=512),
            CategoricalFeature(name="api_service", path="api.service.name", max_vocab=128),
            CategoricalFeature(name="status", path="status_id"),
            CategoricalFeature(name="error", path="api.response.error"),
            CategoricalFeature(name="actor_type", path="actor.user.type"),
            CategoricalFeature(name="region", path="cloud.region"),
            HashedFeature(name="actor", path="actor.user.name"),
            HashedFeature(
                name="actor_operation", path="actor.user.name", together_with="api.operation"
            ),
            HashedFeature(
                name="actor_src", path="actor.user.name", together_with="src_endpoint.ip"
            ),
            HashedFeature(name="user_agent", path="http_request.user_agent"),
            CountFeature(name="resources", path="resources"),
            *_endpoint("src_endpoint", "src"),
        ],
    )


def _http() -> ClassSpec:
    # WAFs, proxies and load balancers. A web shell shows as a rare path on a known host,
    # asked for by a client that host never served, often with an odd user agent.
    return ClassSpec(
        class_uid=HTTP_ACTIVITY,
        features=[
            HourFeature(name="hour"),
            CategoricalFeature(name="activity", path="activity_id"),
            CategoricalFeature(name="method", path="http_request.http_method"),
            CategoricalFeature(name="status", path="http_response.code", max_vocab=128),
            CategoricalFeature(name="content_type", path="http_response.content_type"),
            CategoricalFeature(name="scheme", path="http_request.url.scheme"),
            CategoricalFeature(name="action", path="action_id"),
            CategoricalFeature(name="dst_port", path="dst_endpoint.port", max_vocab=64),
            HashedFeature(name="url_host", path="http_request.url.hostname"),
            HashedFeature(name="url_path", path="http_request.url.path"),
            TextFeature(name="url_path_shape", path="http_request.url.path"),
            TextFeature(name="query_shape", path="http_request.url.query_string"),
            HashedFeature(name="user_agent", path="http_request.user_agent"),
            TextFeature(name="user_agent_shape", path="http_request.user_agent"),
            HashedFeature(
                name="client_host",
                path="src_endpoint.ip",
                together_with="http_request.url.hostname",
            ),
            HashedFeature(
                name="host_path",
                path="http_request.url.hostname",
                together_with="http_request.url.path",
            ),
            *_endpoint("src_endpoint", "src"),
            NumericFeature(name="bytes_in", path="traffic.bytes_in"),
            NumericFeature(name="bytes_out", path="traffic.bytes_out"),
            NumericFeature(name="response_length", path="http_response.length"),
        ],
    )


def _process() -> ClassSpec:
    # EDR and Sysmon process launches. An encoded PowerShell started by an Office
    # application is a new parent x child pair with a long, high-entropy command line.
    return ClassSpec(
        class_uid=PROCESS_ACTIVITY,
        features=[
            HourFeature(name="hour"),
            CategoricalFeature(name="activity", path="activity_id"),
            CategoricalFeature(name="integrity", path="process.integrity_id"),
            HashedFeature(name="image", path="process.file.name"),
            HashedFeature(name="image_path", path="process.file.path"),
            HashedFeature(name="parent_image", path="actor.process.file.name"),
            HashedFeature(
                name="parent_child",
                path="actor.process.file.name",
                together_with="process.file.name",
            ),
            TextFeature(name="cmd_shape", path="process.cmd_line"),
            HashedFeature(name="cmd_line", path="process.cmd_line"),
            HashedFeature(name="user", path="actor.user.name"),
            HashedFeature(
                name="user_host", path="actor.user.name", together_with="device.hostname"
            ),
            HashedFeature(name="host", path="device.hostname"),
        ],
    )


def _account_change() -> ClassSpec:
    # Identity providers and cloud IAM. A privilege grant (a policy attached, a user made
    # admin) by an actor that never changes accounts is the case to catch.
    return ClassSpec(
        class_uid=ACCOUNT_CHANGE,
        features=[
            HourFeature(name="hour"),
            CategoricalFeature(name="activity", path="activity_id"),
            CategoricalFeature(name="status", path="status_id"),
            CategoricalFeature(name="operation", path="api.operation", max_vocab=256),
            CategoricalFeature(name="target_type", path="user.type_id"),
            CategoricalFeature(name="actor_type", path="actor.user.type"),
            HashedFeature(name="policy", path="policy.name"),
            HashedFeature(name="actor", path="actor.user.name"),
            HashedFeature(name="actor_uid", path="actor.user.uid"),
            HashedFeature(name="target", path="user.name"),
            HashedFeature(name="actor_target", path="actor.user.name", together_with="user.name"),
            HashedFeature(
                name="actor_activity", path="actor.user.name", together_with="activity_id"
            ),
            HashedFeature(name="actor_policy", path="actor.user.name", together_with="policy.name"),
            HashedFeature(name="user_agent", path="http_request.user_agent"),
            *_endpoint("src_endpoint", "src"),
        ],
    )


def _file_system() -> ClassSpec:
    # EDR and Sysmon file events. Ransomware renames many files in a burst, with new
    # extensions, from a process that never touched those folders.
    return ClassSpec(
        class_uid=FILE_SYSTEM_ACTIVITY,
        features=[
            HourFeature(name="hour"),
            CategoricalFeature(name="activity", path="activity_id"),
            CategoricalFeature(name="file_type", path="file.type_id"),
            TextFeature(name="path_shape", path="file.path"),
            HashedFeature(name="folder", path="file.parent_folder"),
            HashedFeature(name="extension", path="file.ext"),
            HashedFeature(name="process", path="actor.process.file.name"),
            HashedFeature(
                name="process_folder",
                path="actor.process.file.name",
                together_with="file.parent_folder",
            ),
            HashedFeature(
                name="process_activity", path="actor.process.file.name", together_with="activity_id"
            ),
            HashedFeature(name="user", path="actor.user.name"),
            HashedFeature(name="host", path="device.hostname"),
            NumericFeature(name="size", path="file.size"),
        ],
    )


def default_specs() -> dict[int, ClassSpec]:
    """Fresh, unfitted curated specs for every class that has one."""
    return {
        spec.class_uid: spec
        for spec in (
            _network(),
            _dns(),
            _authentication(),
            _api(),
            _http(),
            _process(),
            _account_change(),
            _file_system(),
        )
    }
