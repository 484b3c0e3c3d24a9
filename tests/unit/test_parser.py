"""The parser: every input ends in exactly one explicit outcome, never an exception."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ocsf_detect.features.pipeline import FeaturePipeline
from ocsf_detect.ocsf import (
    EventParser,
    Parsed,
    Rejected,
    RejectReason,
    Unsupported,
    UnsupportedReason,
)
from ocsf_detect.ocsf.limits import MAX_EVENT_BYTES, MAX_NESTING_DEPTH
from ocsf_detect.ocsf.parser import _decode_reference, decode_event
from ocsf_detect_tools.specs import default_specs
from tests.conftest import EVENTS_DIR

PARSER_PLANS = {uid: FeaturePipeline(s).plan for uid, s in default_specs().items()}
PARSER = EventParser(PARSER_PLANS)


def sample(name: str) -> dict:
    return json.loads((EVENTS_DIR / "ocsf" / name).read_text())


@pytest.mark.parametrize(
    ("name", "class_uid"),
    [
        ("network_activity.json", 4001),
        ("dns_activity.json", 4003),
        ("authentication.json", 3002),
        ("api_activity.json", 6003),
    ],
)
def test_supported_classes_parse_from_bytes_and_text(name: str, class_uid: int) -> None:
    raw = (EVENTS_DIR / "ocsf" / name).read_bytes()
    for value in (raw, raw.decode()):
        outcome = PARSER.parse(value)
        assert isinstance(outcome, Parsed)
        assert outcome.class_uid == class_uid
        assert outcome.event == json.loads(raw)  # the event is kept as it came


def test_other_classes_are_unsupported_not_errors() -> None:
    # Process Activity has a curated spec; Module Activity has none (a bundle may still
    # score it on a spec derived at train, but a parser without its plan cannot).
    event = {**sample("process_activity_unsupported.json"), "class_uid": 1005}
    outcome = PARSER.parse(orjson.dumps(event))
    assert outcome == Unsupported(1005)


def test_a_class_the_bundle_knows_too_small_says_why() -> None:
    known = Unsupported(1005, UnsupportedReason.TOO_FEW_BASELINE_EVENTS, 12)
    parser = EventParser(PARSER_PLANS, unsupported={1005: known})
    event = {**sample("process_activity_unsupported.json"), "class_uid": 1005}
    assert parser.parse(orjson.dumps(event)) is known
    event["class_uid"] = 1006
    assert parser.parse(orjson.dumps(event)) == Unsupported(1006)


def test_used_fields_are_validated_and_coerced() -> None:
    event = sample("network_activity.json")
    event["dst_endpoint"]["port"] = "443"  # numeric text is tolerated
    outcome = PARSER.parse(orjson.dumps(event))
    assert isinstance(outcome, Parsed)
    plan = FeaturePipeline(default_specs()[4001]).plan
    assert outcome.values[plan.index("dst_endpoint.port")] == 443.0


def _with(event: dict, path: str, value: object) -> bytes:
    node = event
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    return orjson.dumps(event)


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (b"{not json", RejectReason.INVALID_JSON, None),
        (b"\xff\xfe{}", RejectReason.INVALID_ENCODING, None),
        (b"[1, 2]", RejectReason.NOT_AN_OBJECT, None),
        (b'"text"', RejectReason.NOT_AN_OBJECT, None),
        (b'{"time": 1741939200000}', RejectReason.MISSING_FIELD, "class_uid"),
        (b'{"class_uid": "abc", "time": 1}', RejectReason.WRONG_TYPE, "class_uid"),
        (b'{"class_uid": 4001}', RejectReason.MISSING_FIELD, "time"),
        (b'{"class_uid": 4001, "time": {"ms": 1}}', RejectReason.WRONG_TYPE, "time"),
        (b'{"class_uid": 4001, "time": NaN}', RejectReason.NON_FINITE_NUMBER, "time"),
        (
            b'{"class_uid": 4001, "time": 1, "duration": Infinity}',
            RejectReason.NON_FINITE_NUMBER,
            "duration",
        ),
        (
            b'{"class_uid": 4001, "time": 123456789012345678901234567890}',
            RejectReason.NUMBER_OUT_OF_RANGE,
            "time",
        ),
        (b"{}", RejectReason.MISSING_FIELD, "class_uid"),
        (b"", RejectReason.INVALID_JSON, None),
        # Unpaired surrogate escapes, on the fast path and on the exact (long digits) one.
        (b'{"class_uid": 4001, "time": 1, "m": "\\ud800"}', RejectReason.INVALID_ENCODING, "m"),
        (
            b'{"class_uid": 4001, "time": 1, "id": 1234567890123456789, "m": "a\\udc00"}',
            RejectReason.INVALID_ENCODING,
            "m",
        ),
        ('{"class_uid": "\u00b2", "time": 1}'.encode(), RejectReason.WRONG_TYPE, "class_uid"),
        (
            b'{"class_uid": 4001, "time": "0001-01-01T00:00:00"}',
            RejectReason.NUMBER_OUT_OF_RANGE,
            "time",
        ),
        (
            b'{"class_uid": 4001, "time": "1900-01-01T00:00:00Z"}',
            RejectReason.NUMBER_OUT_OF_RANGE,
            "time",
        ),
    ],
)
def test_rejections_carry_a_stable_reason_and_the_field(
    raw: bytes, reason: RejectReason, field: str | None
) -> None:
    outcome = PARSER.parse(raw)
    assert isinstance(outcome, Rejected)
    assert outcome.reason is reason
    assert outcome.field == field
    assert outcome.message


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("dst_endpoint.port", "https", "dst_endpoint.port"),
        ("traffic.bytes_in", [1, 2], "traffic.bytes_in"),
        ("src_endpoint", "10.0.0.1", "src_endpoint"),
        ("src_endpoint.ip", {"v4": "10.0.0.1"}, "src_endpoint.ip"),
    ],
)
def test_wrong_type_in_a_used_field_names_the_field(path: str, value: object, field: str) -> None:
    outcome = PARSER.parse(_with(sample("network_activity.json"), path, value))
    assert isinstance(outcome, Rejected)
    assert outcome.reason is RejectReason.WRONG_TYPE
    assert outcome.field == field
    assert field in outcome.message


def test_wrong_type_in_an_unused_field_is_kept_as_it_came() -> None:
    outcome = PARSER.parse(_with(sample("network_activity.json"), "message", {"any": ["thing"]}))
    assert isinstance(outcome, Parsed)


def test_missing_optional_fields_are_normal() -> None:
    outcome = PARSER.parse(b'{"class_uid": 4001, "time": 1741939200000}')
    assert isinstance(outcome, Parsed)
    assert all(v is None for v in outcome.values)


def test_time_tolerance_seconds_iso_and_time_dt() -> None:
    ms = 1741939200000
    for event in (
        {"class_uid": 4001, "time": ms // 1000},
        {"class_uid": 4001, "time": "2025-03-14T08:00:00Z"},
        {"class_uid": 4001, "time_dt": "2025-03-14T08:00:00+00:00"},
        {"class_uid": 4001, "time": "2025-03-14T08:00:00"},  # no offset: UTC
        {"class_uid": 4001, "time": float(ms)},
    ):
        outcome = PARSER.parse(orjson.dumps(event))
        assert isinstance(outcome, Parsed), event
        assert outcome.time_ms == ms


def test_size_and_nesting_limits() -> None:
    big = b'{"class_uid": 4001, "time": 1, "message": "' + b"x" * MAX_EVENT_BYTES + b'"}'
    assert PARSER.parse(big).reason is RejectReason.TOO_LARGE  # type: ignore[union-attr]
    deep = {"class_uid": 4001, "time": 1, "unmapped": {}}
    node = deep["unmapped"]
    for _ in range(MAX_NESTING_DEPTH + 5):
        node["x"] = {}
        node = node["x"]
    outcome = PARSER.parse(orjson.dumps(deep))
    assert isinstance(outcome, Rejected)
    assert outcome.reason is RejectReason.TOO_DEEP
    assert outcome.field is not None
    assert outcome.field.startswith("unmapped.x")
    very_deep = b"[" * 5000 + b"]" * 5000  # beyond orjson's own recursion limit
    assert PARSER.parse(very_deep).status == "rejected"


def test_non_bytes_input_is_rejected() -> None:
    for value in (None, 42, {"class_uid": 4001}, ["x"]):
        outcome = PARSER.parse(value)
        assert isinstance(outcome, Rejected)
        assert outcome.reason is RejectReason.INVALID_INPUT


# -- property-based: malformed and adversarial inputs ---------------------------------------
json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
OCSF_KEYS = [
    "class_uid",
    "time",
    "src_endpoint",
    "dst_endpoint",
    "traffic",
    "query",
    "user",
    "connection_info",
    "unmapped",
    "answers",
    "api",
    "actor",
    "time_dt",
    "metadata",
]


def _assert_one_outcome(outcome: object) -> None:
    """One explicit outcome, and a rejection that says why: ``invalid_input`` is the
    catch-all of an unforeseen internal failure, which no byte or JSON input may reach."""
    assert isinstance(outcome, Parsed | Unsupported | Rejected)
    if isinstance(outcome, Rejected):
        assert isinstance(outcome.reason, RejectReason)
        assert outcome.reason is not RejectReason.INVALID_INPUT, outcome


def test_the_property_check_refuses_the_catch_all() -> None:
    # the checks below fail on an input that reaches invalid_input: they can fail
    with pytest.raises(AssertionError):
        _assert_one_outcome(Rejected(RejectReason.INVALID_INPUT, "unreadable input"))
    _assert_one_outcome(Rejected(RejectReason.INVALID_JSON, "not JSON"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    _assert_one_outcome(PARSER.parse(raw))


@settings(max_examples=300, deadline=None)
@given(json_value)
def test_arbitrary_json_never_raises(value: object) -> None:
    _assert_one_outcome(PARSER.parse(json.dumps(value)))


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(
        ["network_activity.json", "dns_activity.json", "authentication.json", "api_activity.json"]
    ),
    st.dictionaries(st.sampled_from(OCSF_KEYS), json_value, max_size=5),
    st.sampled_from([4001, 4003, 3002, 6003, 1007, "4001", 4001.0, None, -1]),
)
def test_mutated_events_never_raise(name: str, replacement: dict, class_uid: object) -> None:
    event = {**sample(name), **replacement}
    if class_uid is not None:
        event["class_uid"] = class_uid
    outcome = PARSER.parse(json.dumps(event))
    _assert_one_outcome(outcome)
    if isinstance(outcome, Parsed):
        assert outcome.event == event


FEATURE_PATHS = sorted({path for plan in PARSER_PLANS.values() for path in plan.paths})
edge_leaf = (
    json_leaf
    | st.sampled_from(
        [2**63, -(2**63) - 1, 2**64, 10**30, 1e308, -1e308, 5e-324, "\ud800", "\uffff", ""]
    )
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=5)
)


def _set_path(event: dict, path: str, value: object) -> None:
    node = event
    *parents, leaf = path.split(".")
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[leaf] = value


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(
        ["network_activity.json", "dns_activity.json", "authentication.json", "api_activity.json"]
    ),
    st.dictionaries(
        st.sampled_from(FEATURE_PATHS),
        edge_leaf
        | st.lists(edge_leaf, max_size=3)
        | st.dictionaries(st.text(max_size=4), edge_leaf, max_size=2),
        max_size=4,
    ),
)
def test_events_with_any_value_at_a_feature_path_never_reach_the_catch_all(
    name: str, values: dict
) -> None:
    event = sample(name)
    for path, value in values.items():
        _set_path(event, path, value)
    try:
        raw = json.dumps(event).encode("utf-8", "surrogatepass")
    except ValueError:  # a float json cannot write
        return
    _assert_one_outcome(PARSER.parse(raw))


def test_integers_beyond_64_bits_are_kept_exactly() -> None:
    # orjson would read these as floats; the event must stay as it came.
    for number in (-(2**63) - 1, 2**64, 10**30):
        outcome = PARSER.parse(
            b'{"class_uid": 4001, "time": 1741939200000, "unmapped": {"id": %d}}' % number
        )
        assert isinstance(outcome, Parsed)
        assert outcome.event["unmapped"]["id"] == number
        assert isinstance(outcome.event["unmapped"]["id"], int)


def test_an_unforeseen_failure_on_a_decoded_event_is_still_an_outcome() -> None:
    class Hostile(dict):
        def get(self, *args, **kwargs):
            raise RuntimeError("unreadable mapping")

    outcome = PARSER.parse_object(Hostile(class_uid=4001))
    assert isinstance(outcome, Rejected)
    assert outcome.reason is RejectReason.INVALID_INPUT
    assert "unreadable mapping" in outcome.message


def _typed(values: object) -> object:
    """Values with their types, so that 1 and 1.0 or True and 1 differ."""
    if isinstance(values, tuple):
        return tuple(_typed(v) for v in values)
    if isinstance(values, list):
        return ("list", [_typed(v) for v in values])
    return (type(values).__name__, values)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(
        ["network_activity.json", "dns_activity.json", "authentication.json", "api_activity.json"]
    ),
    st.dictionaries(
        st.sampled_from(FEATURE_PATHS),
        edge_leaf
        | st.sampled_from(["12", " 3.5 ", "inf", "nan", True, False, "x" * 65537, [1, "a"], {}])
        | st.lists(edge_leaf, max_size=3)
        | st.dictionaries(st.text(max_size=4), edge_leaf, max_size=2),
        max_size=4,
    ),
)
def test_the_checked_getter_agrees_with_pydantic_wherever_it_answers(
    name: str, values: dict
) -> None:
    # The hot path reads fields without pydantic when their types are already right; it
    # must return exactly what the TypeAdapter returns (and leave every other case to it).
    event = sample(name)
    for path, value in values.items():
        _set_path(event, path, value)
    plan = PARSER_PLANS[event["class_uid"]]
    checked = plan._checked(event)
    try:
        expected: object = plan._getter(plan._adapter.validate_python(event))
    except ValidationError:
        expected = None
    if checked is not None:
        assert _typed(checked) == _typed(expected)
    assert _typed(plan.extract(event)) == _typed(expected) or isinstance(
        plan.extract(event), Rejected
    )


def test_the_checked_getter_answers_for_well_typed_events() -> None:
    # Without this the agreement above would hold trivially.
    for name in ("network_activity.json", "dns_activity.json", "authentication.json"):
        event = sample(name)
        plan = PARSER_PLANS[event["class_uid"]]
        assert plan._checked(event) is not None
        assert plan._checked(event) == plan._getter(plan._adapter.validate_python(event))


# -- the fast decoder against the reference decoder -------------------------------------------
def _same_decoding(raw: bytes | str) -> None:
    fast, reference = decode_event(raw), _decode_reference(raw)
    if isinstance(reference, Rejected):
        assert isinstance(fast, Rejected), (raw, fast)
        assert (fast.reason, fast.message, fast.field) == (
            reference.reason,
            reference.message,
            reference.field,
        )
    else:
        assert _typed_tree(fast) == _typed_tree(reference), raw


def _typed_tree(value: object) -> object:
    """A decoded value with every leaf's type, so that 1 and 1.0, -0.0 and 0.0 differ."""
    if isinstance(value, dict):
        return ("dict", [(k, _typed_tree(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed_tree(v) for v in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


# Text of numbers and strings where JSON decoders are known to differ.
json_number_text = (
    st.sampled_from(
        [
            "0",
            "-0",
            "-0.0",
            "1e400",
            "-1e400",
            "1e-400",
            "2.2250738585072011e-308",
            "9007199254740993",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "1" * 30,
            "9" * 5000,
            "1E2",
            "1.5e+3",
            "01",
            "1.",
            ".5",
            "NaN",
            "Infinity",
            "-Infinity",
            "0.1e1",
            "123456789012345678.9",
        ]
    )
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.integers().map(str)
)
json_string_text = st.sampled_from(
    [
        r'"\ud800"',
        r'"\udc00\ud800"',
        r'"\ud83d\ude00"',
        r'"\u0000"',
        '"\x01"',
        '"\t"',
        r'"\/"',
        r'"\x"',
        '"\xff"',
        '"a',
        r'"\uD83D"',
    ]
) | st.text(max_size=8).map(json.dumps)


@settings(max_examples=500, deadline=None)
@given(st.lists(json_number_text | json_string_text, min_size=1, max_size=3), st.booleans())
def test_the_fast_decoder_returns_what_the_reference_returns(
    tokens: list[str], duplicate_key: bool
) -> None:
    members = [f'"k{i}": {t}' for i, t in enumerate(tokens)]
    if duplicate_key:
        members.append(f'"k0": {tokens[-1]}')
    text = "{" + ", ".join(members) + "}"
    _same_decoding(text)
    _same_decoding(text.encode("utf-8", "surrogatepass"))
    for token in tokens:  # the token alone: a JSON value that is not an object
        _same_decoding(token.encode("utf-8", "surrogatepass"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200) | json_value.map(lambda v: json.dumps(v).encode()))
def test_the_fast_decoder_agrees_on_arbitrary_input(raw: bytes) -> None:
    _same_decoding(raw)
    _same_decoding(b'{"a": ' + raw + b"}")


def test_the_fast_decoder_agrees_at_the_nesting_limit_and_on_real_events() -> None:
    for depth in (MAX_NESTING_DEPTH - 1, MAX_NESTING_DEPTH, MAX_NESTING_DEPTH + 1, 2000):
        _same_decoding(b'{"a": ' + b"[" * depth + b"]" * depth + b"}")
        _same_decoding('{"a": ' + '{"b": ' * depth + "1" + "}" * depth + "}")
        # objects and arrays in turn: neither bracket alone exceeds the limit
        half = depth // 2
        _same_decoding(b'{"a": ' + b'[{"b": ' * half + b"1" + b"}]" * half + b"}")
    for path in sorted(EVENTS_DIR.glob("ocsf/*.json")):
        _same_decoding(path.read_bytes())
        assert isinstance(decode_event(path.read_bytes()), dict)


def test_subclasses_of_bytes_and_str_are_read_as_plain_bytes_and_text() -> None:
    class Raw(bytes):
        pass

    class Text(str):
        def __str__(self) -> str:
            return "not the event"

    raw = (EVENTS_DIR / "ocsf" / "network_activity.json").read_bytes()
    plain = PARSER.parse(raw)
    assert isinstance(plain, Parsed)
    for variant in (Raw(raw), Text(raw.decode())):
        outcome = PARSER.parse(variant)
        assert isinstance(outcome, Parsed), outcome
        assert (outcome.class_uid, outcome.values, outcome.event) == (
            plain.class_uid,
            plain.values,
            plain.event,
        )
    assert PARSER.parse(Raw(b"[1]")).reason is RejectReason.NOT_AN_OBJECT


@pytest.mark.parametrize("class_uid", [2**64, -(2**63) - 1, 1e300, "99999999999999999999999"])
def test_a_class_uid_beyond_64_bits_is_out_of_range_not_unsupported(class_uid: object) -> None:
    # every outcome and metric echoes the class_uid, and no JSON encoder of the outcome
    # takes an integer beyond 64 bits
    event = {**sample("network_activity.json"), "class_uid": class_uid}
    for outcome in (PARSER.parse_object(event), PARSER.parse(json.dumps(event))):
        assert isinstance(outcome, Rejected)
        assert outcome.reason is RejectReason.NUMBER_OUT_OF_RANGE
