"""Pack event lines into Kinesis records the way real producers do (for replay and tests).

- ``json``: one event per record (the SDKs, Kinesis Agent in its default mode);
- ``ndjson``: newline-delimited events, several per record (Vector, Cribl);
- ``gzip``: the same, gzip-compressed (Vector's and Cribl's compression, Fluent Bit);
- ``kpl``: KPL aggregation (the KPL, the Fluent Bit and fluentd aggregators): magic bytes,
  a protobuf ``AggregatedRecord``, its MD5;
- ``cloudwatch-logs``: a subscription filter's gzip-compressed JSON envelope whose
  ``logEvents`` carry the events as ``message`` text, after one ``CONTROL_MESSAGE``
  record, as CloudWatch Logs sends when a subscription starts.

A line that cannot fit one record on its own is not packed: ``pack`` returns it among the
rejected, and the caller counts it (``too_large``).

>>> [len(r.events) for r in pack([b'{"a":1}', b'{"a":2}'], "ndjson").records]
[2]
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import orjson

from ocsf_detect.records import KPL_MAGIC

RecordFormatName = Literal["json", "ndjson", "gzip", "kpl", "cloudwatch-logs"]
RECORD_FORMATS: Final[tuple[RecordFormatName, ...]] = (
    "json",
    "ndjson",
    "gzip",
    "kpl",
    "cloudwatch-logs",
)

KINESIS_RECORD_BYTES: Final = 1024 * 1024
"""Kinesis' cap on one record: data and partition key together."""
KPL_AGGREGATION_BYTES: Final = 51_200
"""The KPL's default AggregationMaxSize."""
BATCH_BYTES: Final = 256 * 1024
"""What NDJSON, gzip and CloudWatch Logs records gather before they are sent."""
PARTITION_KEY_BYTES: Final = 24
"""Room kept for the partition key the replay gives each record."""
CLOUDWATCH_CONTROL_MESSAGE: Final = {
    "messageType": "CONTROL_MESSAGE",
    "owner": "CloudwatchLogs",
    "logGroup": "",
    "logStream": "",
    "subscriptionFilters": [],
    "logEvents": [
        {
            "id": "",
            "timestamp": 0,
            "message": "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream.",
        }
    ],
}


@dataclass(frozen=True, slots=True)
class PackedRecord:
    """One Kinesis record's data and the positions of the input lines inside it."""

    data: bytes
    events: tuple[int, ...]


@dataclass(slots=True)
class Packing:
    records: list[PackedRecord] = field(default_factory=list)
    too_large: list[int] = field(default_factory=list)
    """Positions of the lines that fit no record."""


def pack(
    lines: Sequence[bytes],
    record_format: RecordFormatName,
    *,
    record_bytes: int = KINESIS_RECORD_BYTES - PARTITION_KEY_BYTES,
) -> Packing:
    """Kinesis records holding ``lines``, in order, packed as ``record_format`` does."""
    if record_format == "json":
        return _one_per_record(lines, record_bytes)
    if record_format == "ndjson":
        return _grouped(lines, record_bytes, BATCH_BYTES, _ndjson)
    if record_format == "gzip":
        return _grouped(lines, record_bytes, BATCH_BYTES, lambda g: gzip.compress(_ndjson(g)))
    if record_format == "kpl":
        return _grouped(lines, record_bytes, KPL_AGGREGATION_BYTES, kpl_aggregate)
    if record_format == "cloudwatch-logs":
        packing = _grouped(lines, record_bytes, BATCH_BYTES, cloudwatch_envelope)
        control = PackedRecord(gzip.compress(orjson.dumps(CLOUDWATCH_CONTROL_MESSAGE)), ())
        packing.records.insert(0, control)
        return packing
    raise ValueError(f"unknown record format {record_format!r}; one of {RECORD_FORMATS}")


def _one_per_record(lines: Sequence[bytes], record_bytes: int) -> Packing:
    out = Packing()
    for i, line in enumerate(lines):
        if len(line) > record_bytes:
            out.too_large.append(i)
        else:
            out.records.append(PackedRecord(line, (i,)))
    return out


def _grouped(
    lines: Sequence[bytes],
    record_bytes: int,
    target_bytes: int,
    encode: Callable[[Sequence[bytes]], bytes],
) -> Packing:
    """Consecutive lines gathered up to ``target_bytes`` of input, each group encoded; a
    group whose encoding is over ``record_bytes`` is split, and a single line that still
    does not fit is rejected."""
    out = Packing()
    group: list[int] = []
    size = 0

    def flush(members: list[int]) -> None:
        if not members:
            return
        data = encode([lines[i] for i in members])
        if len(data) <= record_bytes:
            out.records.append(PackedRecord(data, tuple(members)))
        elif len(members) == 1:
            out.too_large.append(members[0])
        else:
            half = len(members) // 2
            flush(members[:half])
            flush(members[half:])

    for i, line in enumerate(lines):
        if group and size + len(line) + 1 > target_bytes:
            flush(group)
            group, size = [], 0
        group.append(i)
        size += len(line) + 1
    flush(group)
    out.records.sort(key=lambda r: r.events[0])
    return out


def _ndjson(lines: Sequence[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def cloudwatch_envelope(
    lines: Sequence[bytes], *, log_group: str = "ocsf-events", first_id: int = 0
) -> bytes:
    """A CloudWatch Logs subscription DATA_MESSAGE carrying ``lines``, gzip-compressed."""
    envelope = {
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": log_group,
        "logStream": "producer-0",
        "subscriptionFilters": ["ocsf-detect"],
        "logEvents": [
            {
                "id": str(first_id + i),
                "timestamp": 1_730_000_000_000 + i,
                # CloudWatch Logs holds UTF-8 text only: what is not becomes U+FFFD
                "message": line.decode("utf-8", "replace"),
            }
            for i, line in enumerate(lines)
        ],
    }
    return gzip.compress(orjson.dumps(envelope))


def kpl_aggregate(lines: Sequence[bytes], partition_keys: Sequence[str] | None = None) -> bytes:
    """A KPL aggregated record of ``lines`` (user records with their partition keys)."""
    keys = list(partition_keys) if partition_keys is not None else ["0"]
    body = b"".join(_length_field(1, key.encode()) for key in keys)
    for i, line in enumerate(lines):
        record = _varint_field(1, i % len(keys)) + _length_field(3, line)
        body += _length_field(3, record)
    return KPL_MAGIC + body + hashlib.md5(body, usedforsecurity=False).digest()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _length_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value
