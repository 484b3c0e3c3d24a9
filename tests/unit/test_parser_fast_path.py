"""The parser's fast path against the path it stands in for.

``EventParser.parse`` reads a supported event's plan values with a msgspec decoder typed
with only the plan's fields (``FieldPlan.read_json``), and leaves to ``_dispatch`` (the
checked getter, then pydantic) every event that decoder refuses. For every input the
outcome must be the one ``_dispatch`` alone returns: same status, reason, message, field,
class, time, values with their Python types (1, 1.0 and True differ) and event.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocsf_detect.features.pipeline import FeaturePipeline
from ocsf_detect.features.plan import FieldPlan, ValueType
from ocsf_detect.ocsf import EventParser, Parsed, Rejected, Unsupported
from ocsf_detect.ocsf.limits import MAX_PLAUSIBLE_MS, MIN_PLAUSIBLE_MS
from ocsf_detect.ocsf.outcomes import ParseOutcome
from ocsf_detect.ocsf.parser import _unreadable, decode_event
from ocsf_detect_tools.specs import default_specs
from tests.conftest import EVENTS_DIR
from tests.unit.test_parser import _set_path

# Every kind of path, with keys that are no Python names, three levels of objects, and
# the two fields the parser reads itself: the curated plans hold no path like these.
ODD_CLASS = 9001
ODD_PLAN = FieldPlan(
    {
        "class_uid": ValueType.SCALAR,
        "time": ValueType.NUMBER,
        "a": ValueType.ANY,
        "b.c": ValueType.LIST,
        "b.class": ValueType.SCALAR,
        "b.d.e f": ValueType.NUMBER,
        "b.d.g": ValueType.SCALAR,
        "é.ü": ValueType.SCALAR,
        "0": ValueType.NUMBER,
    }
)
ODD_EVENT = {
    "class_uid": ODD_CLASS,
    "time": 1741939200000,
    "a": {"x": [1, "y"]},
    "b": {"c": [1, 2], "class": "k", "d": {"e f": 2.5, "g": 7}},
    "é": {"ü": "ö"},
    "0": 3,
}
PLANS: dict[int, FieldPlan] = {
    **{uid: FeaturePipeline(spec).plan for uid, spec in default_specs().items()},
    ODD_CLASS: ODD_PLAN,
}
PARSER = EventParser(PLANS)
SAMPLES = {path.name: json.loads(path.read_text()) for path in EVENTS_DIR.glob("ocsf/*.json")}
BASES = {**SAMPLES, "odd": ODD_EVENT}


def reference_parse(raw: object) -> ParseOutcome:
    """``EventParser.parse`` without its fast path: decode, then ``_dispatch``."""
    try:
        decoded = decode_event(raw)
        if isinstance(decoded, Rejected):
            return decoded
        return PARSER._dispatch(decoded)
    except Exception as exc:
        return _unreadable(exc)


def _typed(value: object) -> object:
    """A value with every leaf's type, so that 1, 1.0 and True, or 0.0 and -0.0, differ."""
    if isinstance(value, dict):
        return ("dict", [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_typed(v) for v in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def _outcome(outcome: ParseOutcome) -> object:
    if isinstance(outcome, Parsed):
        fields = (outcome.class_uid, outcome.time_ms, outcome.values, outcome.event)
        return (outcome.status, _typed(fields))
    if isinstance(outcome, Rejected):
        return (outcome.status, outcome.reason, outcome.message, _typed(outcome.field))
    return (outcome.status, _typed(outcome.class_uid), outcome.reason, outcome.baseline_events)


def _fast_path_answers(raw: bytes) -> bool:
    """Whether ``parse`` takes its values from ``read_json`` for ``raw``."""
    decoded = decode_event(raw)
    if not isinstance(decoded, dict):
        return False
    class_uid, time_ms = decoded.get("class_uid"), decoded.get("time")
    if type(class_uid) is not int or class_uid not in PLANS or type(time_ms) is not int:
        return False
    plausible = MIN_PLAUSIBLE_MS <= time_ms <= MAX_PLAUSIBLE_MS
    return plausible and PLANS[class_uid].read_json(raw) is not None


def _assert_same_outcome(raw: bytes) -> None:
    forms: list[object] = [raw, bytearray(raw), memoryview(raw)]
    with contextlib.suppress(UnicodeDecodeError):  # bytes that no text holds
        forms.append(raw.decode("utf-8", "surrogatepass"))
    for form in forms:
        assert _outcome(PARSER.parse(form)) == _outcome(reference_parse(form)), form


def _assert_plans_agree(raw: bytes) -> None:
    """Wherever a plan's JSON reader answers, it returns what ``extract`` returns for the
    decoded event (for every plan, whatever the event's class)."""
    decoded = decode_event(raw)
    if not isinstance(decoded, dict):
        return
    for plan in PLANS.values():
        values = plan.read_json(raw)
        if values is not None:
            expected = plan.extract(decoded)
            assert not isinstance(expected, Rejected), (raw, values, expected)
            assert _typed(values) == _typed(expected), raw


# -- writing JSON text with duplicate keys and either form of non-ASCII text ---------------
def _dump(value: Any, at: str, extras: dict[str, list[tuple[str, Any, bool]]], ascii: bool) -> str:
    """JSON text of ``value``; ``extras`` adds members to the object at a dotted path (""
    is the event), first or last, so that a key can appear twice."""
    if isinstance(value, dict):
        members = [
            f"{json.dumps(k, ensure_ascii=ascii)}: "
            f"{_dump(v, f'{at}.{k}' if at else k, extras, ascii)}"
            for k, v in value.items()
        ]
        for key, extra, first in extras.get(at, []):
            member = (
                f"{json.dumps(key, ensure_ascii=ascii)}: {json.dumps(extra, ensure_ascii=ascii)}"
            )
            members.insert(0 if first else len(members), member)
        return "{" + ", ".join(members) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dump(v, f"{at}[]", extras, ascii) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii)


FEATURE_PATHS = sorted({path for plan in PLANS.values() for path in plan.paths})
OBJECT_PATHS = sorted(
    {path.rsplit(".", 1)[0] for path in FEATURE_PATHS if "." in path}
    | {".".join(path.split(".")[:2]) for path in FEATURE_PATHS if path.count(".") > 1}
)
MAX_DOUBLE_INT = (2**53 - 1) * 2**971
SPECIAL = [
    # numbers at the edges of 64 bits, of a double, and of the text of an integer
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64 - 1,
    2**64,
    -(2**64),
    10**30,
    -(10**30),
    2**53 + 1,
    MAX_DOUBLE_INT,
    2**1024 - 2**970 - 1,  # the largest integer that still rounds to a double
    2**1024 - 2**970,  # rounds to infinity
    10**400,
    10**4299,  # 4300 digits: Python's limit for integer text
    1e308,
    5e-324,
    -0.0,
    0.0,
    1.0,
    0,
    float("inf"),
    float("nan"),
    # numeric text, booleans, and text at pydantic's str_max_length (65536 characters)
    "12",
    " 3.5 ",
    "1e3",
    "inf",
    "true",
    True,
    False,
    "",
    "é",
    "日本語",
    "\u2028",
    "\x00",
    "\ud800",
    "😀",
    "x" * 65536,
    "x" * 65537,
    "é" * 65536,
    "é" * 65537,
    "😀" * 65537,
    # a container where a leaf is expected, and leaves where an object is expected
    [],
    [1, "a", None, 2**70],
    {},
    {"port": 1},
]
leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(SPECIAL)
)
value = st.recursive(
    leaf,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
CLASS_UIDS = [
    4001,
    4003,
    3002,
    6003,
    1007,
    ODD_CLASS,
    "4001",
    4001.0,
    True,
    None,
    -1,
    2**70,
    [4001],
]
TIMES = [
    1741939200000,
    1741939200,
    1741939200000.0,
    "1741939200000",
    "2025-03-14T08:00:00Z",
    True,
    None,
    -1,
    0,
    MIN_PLAUSIBLE_MS - 1,
    MIN_PLAUSIBLE_MS,
    MAX_PLAUSIBLE_MS,
    MAX_PLAUSIBLE_MS + 1,
    2**64,
    "x",
]
ABSENT = object()


@st.composite
def event_texts(draw: st.DrawFn) -> bytes:
    """A shipped sample (or the odd plan's event), with hostile values at feature paths
    and at the objects above them, class_uid and time variants, and duplicate keys."""
    event = json.loads(json.dumps(BASES[draw(st.sampled_from(sorted(BASES)))]))
    for path, new in draw(
        st.dictionaries(st.sampled_from(FEATURE_PATHS + OBJECT_PATHS), value, max_size=4)
    ).items():
        _set_path(event, path, new)
    for key, choices in (("class_uid", CLASS_UIDS), ("time", TIMES)):
        choice = draw(st.sampled_from([ABSENT, *choices]) | st.just(event.get(key, ABSENT)))
        if choice is ABSENT:
            event.pop(key, None)
        else:
            event[key] = choice
    if draw(st.booleans()):
        event["time_dt"] = draw(st.sampled_from(["2025-03-14T08:00:00Z", 1741939200000, None]))
    extras: dict[str, list[tuple[str, Any, bool]]] = {}
    for path, duplicate, first in draw(
        st.lists(
            st.tuples(st.sampled_from([*FEATURE_PATHS, "class_uid", "time"]), value, st.booleans()),
            max_size=3,
        )
    ):
        at, _, key = path.rpartition(".")
        extras.setdefault(at, []).append((key, duplicate, first))
    text = _dump(event, "", extras, ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_texts())
def test_parse_returns_what_dispatch_alone_returns(raw: bytes) -> None:
    _assert_same_outcome(raw)


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_texts())
def test_a_plans_json_reader_returns_what_extract_returns_wherever_it_answers(raw: bytes) -> None:
    _assert_plans_agree(raw)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200) | value.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_input_gets_the_same_outcome(raw: bytes) -> None:
    _assert_same_outcome(raw)
    _assert_same_outcome(b'{"class_uid": 4001, "time": 1741939200000, "duration": ' + raw + b"}")


# -- the fast path answers: the agreement above is not trivial -------------------------------
def _sample_with(name: str, path: str, new: object) -> bytes:
    event = json.loads(json.dumps(BASES[name]))
    _set_path(event, path, new)
    return json.dumps(event, ensure_ascii=False).encode()


WELL_TYPED = [
    *(
        json.dumps(BASES[name]).encode()
        for name in (
            "network_activity.json",
            "dns_activity.json",
            "authentication.json",
            "api_activity.json",
            "odd",
        )
    ),
    _sample_with("network_activity.json", "dst_endpoint.port", 443),  # int for a number
    _sample_with("network_activity.json", "traffic.bytes_in", 2**64 + 1),  # beyond 64 bits
    _sample_with("network_activity.json", "traffic.bytes_in", MAX_DOUBLE_INT),
    _sample_with("network_activity.json", "duration", -0.0),
    _sample_with("network_activity.json", "src_endpoint", None),  # a null object
    _sample_with("network_activity.json", "traffic", {}),
    _sample_with("network_activity.json", "status_code", 10**30),  # an exact big integer
    _sample_with("network_activity.json", "status_code", True),
    _sample_with("network_activity.json", "dst_endpoint.hostname", "bücher.例え.jp"),
    _sample_with("network_activity.json", "dst_endpoint.hostname", "é" * 65536),
    _sample_with("odd", "a", [{"deep": [1.5, None]}, 2**70]),
    _sample_with("odd", "b.c", []),
    _sample_with("odd", "b.d", None),
    b'{"class_uid": 4001, "time": 1741939200000, "duration": 1, "duration": 2.5}',
    b'{"class_uid": 4001, "time": 1741939200000, "traffic": null, "traffic": {"bytes_in": 3}}',
]


@pytest.mark.parametrize("raw", WELL_TYPED)
def test_the_fast_path_answers_for_well_typed_events(raw: bytes) -> None:
    assert _fast_path_answers(raw)
    assert isinstance(PARSER.parse(raw), Parsed)
    _assert_same_outcome(raw)
    _assert_plans_agree(raw)


@pytest.mark.parametrize(
    ("path", "new"),
    [
        ("dst_endpoint.port", "443"),  # numeric text: pydantic converts it
        ("dst_endpoint.port", True),
        ("traffic.bytes_in", 10**400),
        ("src_endpoint", "10.0.0.1"),
        ("dst_endpoint.hostname", "x" * 65537),
        ("class_uid", "4001"),
        ("time", 1741939200),  # epoch seconds
    ],
)
def test_the_fast_path_leaves_the_rest_to_dispatch(path: str, new: object) -> None:
    raw = _sample_with("network_activity.json", path, new)
    assert not _fast_path_answers(raw)
    _assert_same_outcome(raw)


def test_the_parser_takes_its_values_from_the_json_reader() -> None:
    # Given a parser whose reader for 4001 answers with a marker
    parser = EventParser(PLANS)
    parser._read_json[4001] = lambda raw: ("from the reader",)
    raw = json.dumps(SAMPLES["network_activity.json"]).encode()
    # When it parses a well-typed event, Then the values are the reader's
    outcome = parser.parse(raw)
    assert isinstance(outcome, Parsed)
    assert outcome.values == ("from the reader",)
    # And where the reader refuses, the plan's extract decides
    parser._read_json[4001] = lambda raw: None
    assert _outcome(parser.parse(raw)) == _outcome(reference_parse(raw))


@pytest.mark.parametrize("path", sorted(EVENTS_DIR.glob("ocsf/*.json")), ids=lambda p: p.name)
def test_shipped_sample_events_get_the_same_outcome(path: Path) -> None:
    raw = path.read_bytes()
    _assert_same_outcome(raw)
    _assert_plans_agree(raw)
    outcome = PARSER.parse(raw)
    assert isinstance(outcome, Parsed | Unsupported)
    assert _fast_path_answers(raw) is isinstance(outcome, Parsed)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, str])
def test_a_fast_path_event_is_kept_as_its_text_and_decoded_once_when_read(kind: type) -> None:
    # Given a well-typed event, as bytes, a mutable buffer, a view or text
    raw = json.dumps(SAMPLES["network_activity.json"]).encode()
    given = bytearray(raw) if kind is memoryview else kind(raw) if kind is not str else raw.decode()
    source = memoryview(given) if kind is memoryview else given
    # When the parser reads it
    outcome = PARSER.parse(source)
    # Then it keeps plain text, not the decoded event
    assert isinstance(outcome, Parsed)
    assert outcome._event is None
    assert outcome._text.__class__ in (bytes, str)
    # And a buffer changed afterwards does not change the event kept
    if isinstance(given, bytearray):
        given[:] = b" " * len(given)
    # And the event, read, is the one that came, decoded once
    event = outcome.event
    assert event == json.loads(raw)
    assert outcome.event is event
    assert outcome._text is None


def test_an_event_the_reference_path_decoded_is_kept_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a decoder that refuses what it reads, so the reference path decodes instead
    # (no input known today takes that way to a parsed event; the rule must still hold)
    import ocsf_detect.ocsf.parser as parser_module

    def refuse(text: object) -> object:
        raise ValueError("refused")

    monkeypatch.setattr(parser_module, "_FAST_DECODE", refuse)
    raw = json.dumps(SAMPLES["network_activity.json"]).encode()
    # When the parser reads a well-typed event
    outcome = EventParser(PLANS).parse(raw)
    # Then it keeps the event as decoded: the kept text would decode again by that decoder
    assert isinstance(outcome, Parsed)
    assert outcome._text is None
    assert outcome.event == json.loads(raw)


def test_a_parsed_event_is_given_decoded_or_as_text_not_both() -> None:
    with pytest.raises(ValueError, match="either decoded or as its text"):
        Parsed(4001, MIN_PLAUSIBLE_MS, ())
    with pytest.raises(ValueError, match="either decoded or as its text"):
        Parsed(4001, MIN_PLAUSIBLE_MS, (), {}, text=b"{}")


def test_threads_reading_a_kept_event_first_get_one_and_the_same_event() -> None:
    import sys
    import threading

    raw = json.dumps(SAMPLES["network_activity.json"]).encode()
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        for _ in range(200):
            # Given a parsed event still kept as text
            outcome = PARSER.parse(raw)
            assert isinstance(outcome, Parsed)
            start = threading.Barrier(4)
            got: list[object] = []

            def read(
                p: Parsed = outcome, barrier: threading.Barrier = start, out: list[object] = got
            ) -> None:
                barrier.wait()
                out.append(p.event)

            # When four threads read it at once
            threads = [threading.Thread(target=read) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            # Then each got the same decoded object
            assert len(got) == 4
            assert all(event is got[0] for event in got)
    finally:
        sys.setswitchinterval(previous)
