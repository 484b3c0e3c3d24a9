"""What producers put in one Kinesis record, unpacked into the events inside it. Pure.

A record's payload is read as the first of these that fits:

- **KPL aggregation** (the KPL, Fluent Bit and fluentd aggregators): magic bytes
  ``F3 89 9A C2``, a protobuf ``AggregatedRecord``, then the MD5 of that protobuf. Each
  user record's data is read again by the rules below (not as another aggregate).
- **gzip** (``1F 8B``, one or more members) and **zlib** (``78`` with a valid header
  checksum): decompressed within ``RecordLimits.max_decompressed_bytes``, then read as
  text. Gzipped text that is a CloudWatch Logs subscription envelope
  (``messageType`` + ``logEvents``) yields each log event's ``message``;
  ``CONTROL_MESSAGE`` envelopes yield nothing and are counted.
- **Newline-delimited JSON**: more than one non-blank line that is not one JSON document
  spread over lines: each non-blank line is one event (a bad line is that event's own
  rejection), trailing newline or not.
- Anything else is **one event**, exactly as before (a pretty-printed event included).

Every event keeps its place in the record (``sub_index``, counted over the whole record
in reading order), so ``(shard, sequence number, sub_index)`` names it across retries. A
part that cannot be read while the rest can (a user record whose gzip is corrupt, a log
event without text) is an ``UnreadableEvent`` in its place. A record that cannot be
unpacked (a corrupt aggregate or compressed stream, or beyond the limits: a
decompression bomb) raises ``UnpackError``: one rejection for the whole record.

>>> unpack(b'{"a": 1}\\n{"a": 2}\\n').events
[b'{"a": 1}', b'{"a": 2}']
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import orjson

from ocsf_detect.ocsf.outcomes import Rejected, RejectReason

KPL_MAGIC: Final = b"\xf3\x89\x9a\xc2"
KPL_DIGEST_BYTES: Final = 16
GZIP_MAGIC: Final = b"\x1f\x8b"

DEFAULT_MAX_DECOMPRESSED_BYTES: Final = 16 * 1024 * 1024
"""16 MiB: a 1 MiB record of OCSF JSON compresses about 8-12x; a bomb inflates 1000x."""
DEFAULT_MAX_BATCH_DECOMPRESSED_BYTES: Final = 128 * 1024 * 1024
"""128 MiB of events kept from one invocation's batch. Each record is bounded on its own,
but a batch of a hundred records that each inflate to the per-record limit would keep
1.6 GiB; a batch of ordinary compressed records (at most 6 MB of payload, 8-12x) stays
well inside this."""
DEFAULT_MAX_EVENTS_PER_RECORD: Final = 10_000
"""CloudWatch Logs delivers at most 10,000 log events in one envelope."""

CLOUDWATCH_DATA: Final = "DATA_MESSAGE"
CLOUDWATCH_CONTROL: Final = "CONTROL_MESSAGE"


class RecordFormat(StrEnum):
    """How a record's payload was packed (what ``unpack`` found)."""

    JSON = "json"
    NDJSON = "ndjson"
    GZIP = "gzip"
    ZLIB = "zlib"
    KPL = "kpl"
    CLOUDWATCH_LOGS = "cloudwatch-logs"


@dataclass(frozen=True, slots=True)
class RecordLimits:
    """Bounds on what one record may expand to; past them the record is rejected. And
    ``max_batch_bytes``: the events one invocation keeps of its whole batch; the records
    past it are left for the next invocation (``stream.expand_records``)."""

    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
    max_events: int = DEFAULT_MAX_EVENTS_PER_RECORD
    max_batch_bytes: int = DEFAULT_MAX_BATCH_DECOMPRESSED_BYTES


@dataclass(frozen=True, slots=True)
class UnreadableEvent:
    """One part of a record that cannot be read, while the rest of the record can (a user
    record of a KPL aggregate whose gzip is corrupt, a log event without message text):
    its own bytes and why."""

    data: bytes
    rejected: Rejected


@dataclass(slots=True)
class Unpacked:
    """The events of one record (raw JSON bytes each, or why a part cannot be read), in
    order, and what was dropped."""

    format: RecordFormat
    events: list[bytes | UnreadableEvent] = field(default_factory=list)
    control_messages: int = 0
    """CloudWatch Logs CONTROL_MESSAGE envelopes: not events, counted and dropped."""


class UnpackError(Exception):
    """A record that cannot be unpacked; ``rejected`` says why (reason, message, field)."""

    def __init__(self, reason: RejectReason, message: str, field: str = "kinesis.data") -> None:
        super().__init__(message)
        self.rejected = Rejected(reason, message, field=field)


def unpack(data: bytes, limits: RecordLimits | None = None) -> Unpacked:
    """The events inside one record's payload (see the module docstring).

    Raises ``UnpackError`` when the record cannot be read as a whole; an event inside it
    that is not valid JSON is still returned, for the parser to give it its own outcome.
    """
    limits = limits or RecordLimits()
    budget = _Budget(limits)
    if data.startswith(KPL_MAGIC):
        out = Unpacked(RecordFormat.KPL)
        for user_data in _kpl_user_records(data):
            try:
                inner = _unpack_one(user_data, budget)
            except UnpackError as exc:
                if exc.rejected.reason in _RECORD_BOUNDS:
                    raise
                out.events.append(UnreadableEvent(user_data, exc.rejected))
            else:
                out.events.extend(inner.events)
                out.control_messages += inner.control_messages
            budget.count_events(len(out.events))
        return out
    out = _unpack_one(data, budget)
    budget.count_events(len(out.events))
    return out


_RECORD_BOUNDS: Final = frozenset({RejectReason.TOO_LARGE, RejectReason.TOO_MANY_EVENTS})
"""Limits on the whole record: past them the whole record is rejected, whatever part
of it crossed them."""


class _Budget:
    """Decompressed bytes spent so far in one record, against its limits."""

    __slots__ = ("limits", "spent")

    def __init__(self, limits: RecordLimits) -> None:
        self.limits = limits
        self.spent = 0

    @property
    def left(self) -> int:
        return self.limits.max_decompressed_bytes - self.spent

    def count_events(self, events: int) -> None:
        if events > self.limits.max_events:
            raise UnpackError(
                RejectReason.TOO_MANY_EVENTS,
                f"the record holds more than {self.limits.max_events:,} events "
                "(the per-record limit, OCSF_DETECT_MAX_EVENTS_PER_RECORD)",
            )


def _unpack_one(data: bytes, budget: _Budget) -> Unpacked:
    if data.startswith(GZIP_MAGIC):
        text = _gunzip(data, budget)
        envelope = _cloudwatch_envelope(text)
        if envelope is not None:
            return _cloudwatch_events(envelope)
        return _lines(text, RecordFormat.GZIP)
    if _is_zlib(data):
        return _lines(_inflate(data, budget), RecordFormat.ZLIB)
    return _lines(data, RecordFormat.JSON)


def _lines(text: bytes, packed: RecordFormat) -> Unpacked:
    """One event, or one per non-blank line when the text is newline-delimited JSON: more
    than one non-blank line, and not one JSON document spread over several lines."""
    stripped = text.strip()
    if b"\n" not in stripped:
        return Unpacked(packed, [stripped if packed is not RecordFormat.JSON else text])
    lines: list[bytes | UnreadableEvent] = [
        line for line in (raw.strip() for raw in stripped.split(b"\n")) if line
    ]
    first = stripped.split(b"\n", 1)[0].strip()
    # The common case costs no parse: a first line that is a whole object is NDJSON.
    if not (first.startswith(b"{") and first.endswith(b"}")) and _one_document(stripped):
        return Unpacked(packed, [text])  # a pretty-printed event
    return Unpacked(RecordFormat.NDJSON if packed is RecordFormat.JSON else packed, lines)


def _one_document(text: bytes) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


# -- compression -------------------------------------------------------------------------
def _is_zlib(data: bytes) -> bool:
    """RFC 1950 header: deflate (CM 8) with a window <= 32K, and a valid check value."""
    return (
        len(data) >= 2
        and data[0] & 0x0F == 8
        and data[0] >> 4 <= 7
        and (data[0] << 8 | data[1]) % 31 == 0
    )


def _gunzip(data: bytes, budget: _Budget) -> bytes:
    """Every gzip member of ``data``, within the budget."""
    parts: list[bytes] = []
    rest = data
    while rest:
        if not rest.startswith(GZIP_MAGIC):
            if rest.strip(b"\x00"):  # zero padding after the last member is tolerated
                raise UnpackError(
                    RejectReason.INVALID_COMPRESSION,
                    f"{len(rest):,} bytes after the last gzip member are not gzip",
                )
            break
        part, rest = _decompress(rest, zlib.MAX_WBITS | 16, "gzip", budget)
        parts.append(part)
    return b"".join(parts)


def _inflate(data: bytes, budget: _Budget) -> bytes:
    part, rest = _decompress(data, zlib.MAX_WBITS, "zlib", budget)
    if rest:
        raise UnpackError(
            RejectReason.INVALID_COMPRESSION,
            f"{len(rest):,} bytes after the end of the zlib stream",
        )
    return part


def _decompress(data: bytes, wbits: int, kind: str, budget: _Budget) -> tuple[bytes, bytes]:
    """One compressed stream: its output and the bytes after it. Never inflates more than
    one byte past the budget, whatever the stream claims."""
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, budget.left + 1)
    except zlib.error as exc:
        raise UnpackError(
            RejectReason.INVALID_COMPRESSION, f"not a valid {kind} stream: {exc}"
        ) from exc
    budget.spent += len(out)
    if budget.spent > budget.limits.max_decompressed_bytes:
        raise UnpackError(
            RejectReason.TOO_LARGE,
            f"the {kind} record decompresses to more than "
            f"{budget.limits.max_decompressed_bytes:,} bytes (the per-record limit, "
            "OCSF_DETECT_MAX_DECOMPRESSED_BYTES)",
        )
    if not inflater.eof:
        raise UnpackError(RejectReason.INVALID_COMPRESSION, f"the {kind} stream is truncated")
    return out, inflater.unused_data


# -- CloudWatch Logs subscription envelopes ----------------------------------------------
def _cloudwatch_envelope(text: bytes) -> dict[str, Any] | None:
    """The envelope when ``text`` is one, else None (then it is events, as any gzip)."""
    head = text[:4096]
    if not text.lstrip().startswith(b"{") or b'"messageType"' not in head:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        # orjson refuses a lone surrogate escape anywhere in the text, which would leave
        # the whole envelope (up to 10,000 log events) one unreadable event; the standard
        # decoder reads it, and only the log event that holds it is rejected, by the parser
        try:
            value = json.loads(text)
        except ValueError:  # not JSON, or not UTF-8 (UnicodeDecodeError is a ValueError)
            return None
    if not isinstance(value, dict):
        return None
    if value.get("messageType") not in (CLOUDWATCH_DATA, CLOUDWATCH_CONTROL):
        return None
    return value


def _cloudwatch_events(envelope: dict[str, Any]) -> Unpacked:
    out = Unpacked(RecordFormat.CLOUDWATCH_LOGS)
    if envelope["messageType"] == CLOUDWATCH_CONTROL:
        out.control_messages = 1
        return out
    log_events = envelope.get("logEvents")
    if not isinstance(log_events, list):
        raise UnpackError(
            RejectReason.WRONG_TYPE,
            "a CloudWatch Logs DATA_MESSAGE needs a logEvents array",
            field="logEvents",
        )
    for i, entry in enumerate(log_events):
        message = entry.get("message") if isinstance(entry, dict) else None
        if isinstance(message, str):
            # surrogatepass: a lone surrogate reaches the parser, which rejects that event
            out.events.append(message.encode("utf-8", "surrogatepass"))
        else:
            why = Rejected(
                RejectReason.WRONG_TYPE,
                f"logEvents[{i}] has no message text",
                field=f"logEvents[{i}].message",
            )
            out.events.append(UnreadableEvent(_entry_bytes(entry), why))
    return out


def _entry_bytes(entry: object) -> bytes:
    try:
        return orjson.dumps(entry)
    except TypeError:  # unreachable for parsed JSON; kept so an entry never raises
        return repr(entry).encode()


# -- KPL aggregation: the protobuf wire format, only as far as AggregatedRecord needs ------
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_AGG_RECORDS = 3  # AggregatedRecord.records (1: partition keys, 2: explicit hash keys)
_AGG_PARTITION_KEYS = 1
_REC_PARTITION_KEY_INDEX = 1
_REC_DATA = 3


def _kpl_user_records(data: bytes) -> list[bytes]:
    """The data of each user record of a KPL-aggregated record, MD5 checked."""
    if len(data) < len(KPL_MAGIC) + KPL_DIGEST_BYTES:
        raise _bad_aggregate("shorter than the magic bytes and the MD5 digest")
    body = data[len(KPL_MAGIC) : len(data) - KPL_DIGEST_BYTES]
    if hashlib.md5(body, usedforsecurity=False).digest() != data[-KPL_DIGEST_BYTES:]:
        raise _bad_aggregate("the MD5 digest does not match the aggregated protobuf")
    partition_keys = 0
    records: list[tuple[int, bytes]] = []
    for number, value in _fields(body):
        if number == _AGG_PARTITION_KEYS and isinstance(value, memoryview):
            partition_keys += 1
        elif number == _AGG_RECORDS:
            if not isinstance(value, memoryview):
                raise _bad_aggregate("AggregatedRecord.records is not a message")
            records.append(_user_record(value))
    for i, (key_index, _data) in enumerate(records):
        if key_index >= partition_keys:
            raise _bad_aggregate(
                f"record {i} points at partition key {key_index}; the table has {partition_keys}"
            )
    return [user_data for _index, user_data in records]


def _user_record(message: memoryview) -> tuple[int, bytes]:
    """(partition_key_index, data) of one ``Record``; both are required fields."""
    data: bytes | None = None
    key_index: int | None = None
    for number, value in _fields(message):
        if number == _REC_DATA:
            if not isinstance(value, memoryview):
                raise _bad_aggregate("Record.data is not bytes")
            data = bytes(value)
        elif number == _REC_PARTITION_KEY_INDEX:
            if not isinstance(value, int):
                raise _bad_aggregate("Record.partition_key_index is not a varint")
            key_index = value
    if data is None or key_index is None:
        raise _bad_aggregate("a user record lacks data or partition_key_index (both required)")
    return key_index, data


def _fields(message: bytes | memoryview) -> list[tuple[int, int | memoryview]]:
    """(field number, value) of every field of one protobuf message: an int for varint
    and fixed-width fields, a view of the bytes for length-delimited ones."""
    view = memoryview(message)
    out: list[tuple[int, int | memoryview]] = []
    pos, end = 0, len(view)
    while pos < end:
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _bad_aggregate("field number 0")
        if wire == _VARINT:
            value, pos = _varint(view, pos)
            out.append((number, value))
        elif wire == _LENGTH:
            size, pos = _varint(view, pos)
            if pos + size > end:
                raise _bad_aggregate("a length-delimited field runs past the message")
            out.append((number, view[pos : pos + size]))
            pos += size
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            if pos + width > end:
                raise _bad_aggregate("a fixed-width field runs past the message")
            out.append((number, int.from_bytes(view[pos : pos + width], "little")))
            pos += width
        else:
            raise _bad_aggregate(f"unsupported wire type {wire}")
    return out


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(view):
            raise _bad_aggregate("a varint runs past the message")
        byte = view[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 64:
            raise _bad_aggregate("a varint longer than 10 bytes")


def _bad_aggregate(why: str) -> UnpackError:
    return UnpackError(RejectReason.INVALID_AGGREGATION, f"invalid KPL aggregated record: {why}")
