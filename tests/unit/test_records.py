"""Unpacking producers' records: KPL aggregates, gzip, zlib, NDJSON, CloudWatch Logs."""

from __future__ import annotations

import base64
import functools
import gzip
import zlib

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocsf_detect.ocsf.outcomes import RejectReason
from ocsf_detect.records import (
    KPL_MAGIC,
    RecordFormat,
    RecordLimits,
    UnpackError,
    UnreadableEvent,
    unpack,
)
from ocsf_detect_tools.producers import (
    CLOUDWATCH_CONTROL_MESSAGE,
    RECORD_FORMATS,
    cloudwatch_envelope,
    kpl_aggregate,
    pack,
)

# Made by the AWS reference aggregator (aws-kinesis-agg 1.2.3, RecordAggregator): three user
# records with partition keys pk-0..pk-2, and two with explicit hash keys (whose table and
# index fields this decoder does not need and must step over).
REFERENCE_KPL = base64.b64decode(
    "84mawgoEcGstMAoEcGstMQoEcGstMhpYCAAaVHsiY2xhc3NfdWlkIjo0MDAxLCJ0aW1lIjoxNzQxOTM5MjAwMDAw"
    "LCJtZXRhZGF0YSI6eyJ1aWQiOiJrcGwtMCIsInZlcnNpb24iOiIxLjEuMCJ9fRpYCAEaVHsiY2xhc3NfdWlkIjo0"
    "MDAxLCJ0aW1lIjoxNzQxOTM5MjAwMDAxLCJtZXRhZGF0YSI6eyJ1aWQiOiJrcGwtMSIsInZlcnNpb24iOiIxLjEu"
    "MCJ9fRpYCAIaVHsiY2xhc3NfdWlkIjo0MDAxLCJ0aW1lIjoxNzQxOTM5MjAwMDAyLCJtZXRhZGF0YSI6eyJ1aWQi"
    "OiJrcGwtMiIsInZlcnNpb24iOiIxLjEuMCJ9fUVqVolrrJX53uJWuhFqPMo="
)
REFERENCE_KPL_WITH_HASH_KEYS = base64.b64decode(
    "84mawgoEcGstYQoEcGstYhInMzQwMjgyMzY2OTIwOTM4NDYzNDYzMzc0NjA3NDMxNzY4MjExNDU1EgExGg0IABAA"
    "Ggd7Im4iOjB9Gg0IARABGgd7Im4iOjF9POD6GJRYram0qZHsnVHmAg=="
)
EVENT = orjson.dumps({"class_uid": 4001, "time": 1741939200000, "metadata": {"uid": "e-1"}})


def reason_of(data: bytes, limits: RecordLimits | None = None) -> RejectReason:
    with pytest.raises(UnpackError) as info:
        unpack(data, limits)
    assert info.value.rejected.field is not None
    return info.value.rejected.reason


def test_plain_records_are_one_event_as_before():
    for data in (EVENT, EVENT + b"\n", b"not json", b"", orjson.dumps([1, 2])):
        out = unpack(data)
        assert (out.format, out.events) == (RecordFormat.JSON, [data])


def test_a_pretty_printed_event_stays_one_event():
    data = orjson.dumps(orjson.loads(EVENT), option=orjson.OPT_INDENT_2)
    assert b"\n" in data
    assert unpack(data).events == [data]


@pytest.mark.parametrize("trailing", [b"", b"\n", b"\r\n", b"\n\n"])
def test_ndjson_is_one_event_per_line_with_or_without_a_trailing_newline(trailing):
    lines = [EVENT, b"not json", b'{"class_uid": 1}']
    out = unpack(b"\r\n".join(lines[:2]) + b"\n\n" + lines[2] + trailing)
    assert (out.format, out.events) == (RecordFormat.NDJSON, lines)


def test_ndjson_whose_first_line_is_hostile_still_splits():
    out = unpack(b"[1,\n" + EVENT)
    assert out.events == [b"[1,", EVENT]


def test_the_reference_aggregators_records_are_read():
    out = unpack(REFERENCE_KPL)
    assert out.format is RecordFormat.KPL
    assert [orjson.loads(e)["metadata"]["uid"] for e in out.events] == ["kpl-0", "kpl-1", "kpl-2"]
    assert unpack(REFERENCE_KPL_WITH_HASH_KEYS).events == [b'{"n":0}', b'{"n":1}']


def test_our_aggregator_writes_what_the_reference_writes():
    # replay's producer must pack exactly as the KPL does, or it would test nothing
    events = unpack(REFERENCE_KPL).events
    assert kpl_aggregate(events, ["pk-0", "pk-1", "pk-2"]) == REFERENCE_KPL


def test_kpl_user_records_may_be_compressed_or_ndjson():
    data = kpl_aggregate([gzip.compress(EVENT + b"\n" + EVENT), zlib.compress(EVENT), EVENT])
    assert unpack(data).events == [EVENT, EVENT, EVENT, EVENT]


def test_a_corrupt_user_record_is_unreadable_alone():
    broken = gzip.compress(EVENT)[:-4]
    first, second, third = unpack(kpl_aggregate([EVENT, broken, EVENT])).events
    assert first == third == EVENT
    assert isinstance(second, UnreadableEvent)
    assert (second.rejected.reason, second.data) == (RejectReason.INVALID_COMPRESSION, broken)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda d: d[:-1] + bytes([d[-1] ^ 1]),  # the digest
        lambda d: d[:10] + bytes([d[10] ^ 1]) + d[11:],  # the protobuf
        lambda d: d[:8],  # cut short
        lambda d: KPL_MAGIC,  # the magic alone
    ],
)
def test_a_kpl_record_failing_its_md5_or_shape_is_rejected(corrupt):
    assert reason_of(corrupt(REFERENCE_KPL)) is RejectReason.INVALID_AGGREGATION


def test_a_kpl_record_whose_protobuf_is_malformed_but_digested_is_rejected():
    import hashlib

    for body in (b"\x1a\x05\x08\x00", b"\x1a\x02\x08\x00", b"\x0b", b"\x00\x01"):
        data = KPL_MAGIC + body + hashlib.md5(body).digest()
        assert reason_of(data) is RejectReason.INVALID_AGGREGATION
    # a user record pointing beyond the partition-key table
    body = b"\x0a\x01k" + b"\x1a\x05\x08\x05\x1a\x01x"
    data = KPL_MAGIC + body + hashlib.md5(body).digest()
    assert reason_of(data) is RejectReason.INVALID_AGGREGATION


def test_gzip_and_zlib_records():
    assert unpack(gzip.compress(EVENT)).events == [EVENT]
    # members concatenate, as gzip(1) reads them
    assert unpack(gzip.compress(EVENT + b"\n") + gzip.compress(EVENT)).events == [EVENT, EVENT]
    assert unpack(zlib.compress(EVENT)).format is RecordFormat.ZLIB
    assert unpack(zlib.compress(EVENT + b"\n" + EVENT, 9)).events == [EVENT, EVENT]


@pytest.mark.parametrize(
    "data",
    [
        gzip.compress(EVENT)[:-6],  # truncated
        b"\x1f\x8b\x08\x00garbage",
        gzip.compress(EVENT) + b"trailing",
        zlib.compress(EVENT)[:-3],
        zlib.compress(EVENT) + b"x",
    ],
)
def test_corrupt_compressed_records_are_rejected(data):
    assert reason_of(data) is RejectReason.INVALID_COMPRESSION


def test_decompression_bombs_are_stopped_at_the_limit():
    limits = RecordLimits(max_decompressed_bytes=1024 * 1024, max_events=100)
    bomb = gzip.compress(b"\x00" * (64 * 1024 * 1024))
    assert len(bomb) < 100_000
    with pytest.raises(UnpackError) as info:
        unpack(bomb, limits)
    assert info.value.rejected.reason is RejectReason.TOO_LARGE
    assert "1,048,576" in info.value.rejected.message
    # the budget is per record, across the user records of an aggregate
    half = gzip.compress(b" " * (600 * 1024))
    assert reason_of(kpl_aggregate([half, half]), limits) is RejectReason.TOO_LARGE
    assert unpack(kpl_aggregate([half]), limits).events == [b""]


def test_too_many_events_in_one_record_are_rejected():
    limits = RecordLimits(max_events=3)
    assert len(unpack(b"\n".join([EVENT] * 3), limits).events) == 3
    assert reason_of(b"\n".join([EVENT] * 4), limits) is RejectReason.TOO_MANY_EVENTS
    assert reason_of(kpl_aggregate([EVENT] * 4), limits) is RejectReason.TOO_MANY_EVENTS


def test_cloudwatch_logs_envelopes():
    out = unpack(cloudwatch_envelope([EVENT, b"not json"]))
    assert (out.format, out.events, out.control_messages) == (
        RecordFormat.CLOUDWATCH_LOGS,
        [EVENT, b"not json"],
        0,
    )
    control = unpack(gzip.compress(orjson.dumps(CLOUDWATCH_CONTROL_MESSAGE)))
    assert (control.events, control.control_messages) == ([], 1)


def test_a_lone_surrogate_in_one_log_event_does_not_take_the_envelope_with_it():
    # Given an envelope whose first message holds a lone surrogate escape (valid JSON text,
    # not valid Unicode: orjson refuses the whole document) beside a good event
    text = (
        b'{"messageType": "DATA_MESSAGE", "logEvents": ['
        b'{"id": "1", "message": "{\\"class_uid\\": 4001, \\"x\\": \\"\\ud800\\"}"},'
        b'{"id": "2", "message": ' + orjson.dumps(EVENT.decode()) + b"}]}"
    )
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)
    # Then the envelope is read: the good event comes through as it was, and the other
    # as bytes that are not UTF-8, which the parser rejects as that event alone
    out = unpack(gzip.compress(text))
    assert out.format is RecordFormat.CLOUDWATCH_LOGS
    first, second = out.events
    assert second == EVENT
    assert first == '{"class_uid": 4001, "x": "\ud800"}'.encode("utf-8", "surrogatepass")
    with pytest.raises(UnicodeDecodeError):
        first.decode()


def test_a_malformed_cloudwatch_envelope_is_rejected_with_the_field():
    # Given a log event without message text beside a good one
    bad = {
        "messageType": "DATA_MESSAGE",
        "logEvents": [{"id": "1", "message": 42}, {"message": "{}"}],
    }
    # Then that log event alone is unreadable, with its own bytes and the field
    first, second = unpack(gzip.compress(orjson.dumps(bad))).events
    assert isinstance(first, UnreadableEvent)
    assert first.rejected.reason is RejectReason.WRONG_TYPE
    assert first.rejected.field == "logEvents[0].message"
    assert first.data == b'{"id":"1","message":42}'
    assert second == b"{}"
    # An envelope without a logEvents array is rejected whole
    no_list = {"messageType": "DATA_MESSAGE", "logEvents": "x"}
    assert reason_of(gzip.compress(orjson.dumps(no_list))) is RejectReason.WRONG_TYPE


def test_an_event_that_only_looks_like_an_envelope_is_an_event():
    event = orjson.dumps({"class_uid": 4001, "messageType": "other"})
    assert unpack(gzip.compress(event)).events == [event]


@pytest.mark.parametrize("record_format", RECORD_FORMATS)
def test_every_producer_format_round_trips_line_for_line(record_format):
    lines = [
        orjson.dumps({"class_uid": 4001, "time": i, "pad": "x" * (i * 37)}) for i in range(300)
    ]
    lines[7] = b"not json"
    packing = pack(lines, record_format)
    assert packing.too_large == []
    got: list[bytes] = []
    for record in packing.records:
        assert len(record.data) <= 1024 * 1024
        events = unpack(record.data).events
        assert len(events) == len(record.events)
        got.extend(events)
    assert [e.strip() for e in got] == lines


def test_a_line_beyond_the_record_cap_is_rejected_before_put():
    huge = orjson.dumps({"pad": "x" * (1024 * 1024)})
    for record_format in ("json", "ndjson", "kpl"):
        packing = pack([EVENT, huge, EVENT], record_format)
        assert packing.too_large == [1]
        assert sorted(i for r in packing.records for i in r.events) == [0, 2]


# -- property-based: no record, however hostile, escapes with an exception ------------------
def _unpacks_or_rejects(data: bytes, limits: RecordLimits | None = None) -> None:
    """Unpacked into bytes events, or rejected for a stated reason: never another
    exception, and never the catch-all ``invalid_input``."""
    rejected = None
    try:
        out = unpack(data, limits)
    except UnpackError as exc:
        rejected = exc.rejected
    if rejected is None:
        for event in out.events:
            if isinstance(event, UnreadableEvent):
                assert event.rejected.reason is not RejectReason.INVALID_INPUT
            else:
                assert isinstance(event, bytes)
    else:
        assert isinstance(rejected.reason, RejectReason)
        assert rejected.reason is not RejectReason.INVALID_INPUT


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_arbitrary_bytes_unpack_or_are_rejected(data: bytes) -> None:
    _unpacks_or_rejects(data)
    _unpacks_or_rejects(KPL_MAGIC + data)
    _unpacks_or_rejects(b"\x1f\x8b" + data)
    _unpacks_or_rejects(b"\x78\x9c" + data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=300))
def test_kpl_aggregates_with_a_valid_digest_over_any_body(body: bytes, cut: int) -> None:
    import hashlib

    real = kpl_aggregate([body, EVENT])[len(KPL_MAGIC) : -16]
    for candidate in (body, real[:cut], real[cut:]):
        _unpacks_or_rejects(KPL_MAGIC + candidate + hashlib.md5(candidate).digest())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=60) | st.just(EVENT), max_size=8),
    st.sampled_from(RECORD_FORMATS),
    st.integers(min_value=0, max_value=8),
)
def test_packed_records_flipped_or_cut_unpack_or_are_rejected(lines, record_format, at) -> None:
    for record in pack(lines, record_format).records:
        data = record.data
        _unpacks_or_rejects(data, RecordLimits(max_decompressed_bytes=1024 * 1024, max_events=5))
        if data:
            i = at % len(data)
            _unpacks_or_rejects(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
            _unpacks_or_rejects(data[:i])


@functools.cache
def default_parser():
    from ocsf_detect.features.pipeline import FeaturePipeline
    from ocsf_detect.ocsf import EventParser
    from ocsf_detect_tools.specs import default_specs

    return EventParser({uid: FeaturePipeline(s).plan for uid, s in default_specs().items()})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.binary(max_size=80)
        | st.sampled_from([EVENT, b'{"class_uid": 4001, "time": "\xef\xbf\xbf"}', b"[[[]]]"]),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(RECORD_FORMATS),
)
def test_every_event_of_a_packed_record_parses_to_a_stated_outcome(lines, record_format):
    from ocsf_detect.ocsf import Rejected

    parser = default_parser()
    for record in pack(lines, record_format).records:
        events: list = []
        try:
            events = unpack(record.data).events
        except UnpackError as exc:
            rejected = exc.rejected
        else:
            rejected = None
        assert rejected is None or rejected.reason is not RejectReason.INVALID_INPUT
        for event in events:
            if isinstance(event, UnreadableEvent):
                continue
            outcome = parser.parse(event)
            if isinstance(outcome, Rejected):
                assert outcome.reason is not RejectReason.INVALID_INPUT, (event, outcome)
