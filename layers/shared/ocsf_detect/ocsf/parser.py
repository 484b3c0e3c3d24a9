"""Decode raw OCSF JSON and dispatch it to the field plan of its class.

No input raises out of this module: every input becomes exactly one of ``Parsed``,
``Unsupported`` or ``Rejected`` (see ``outcomes``). The hot path is two msgspec decodes
of the same text: the whole event, checked (and kept as its text, decoded again only
for the few events that alert); then only the fields the class's features use, typed
(``FieldPlan.read_json``). Events that
typed decode refuses go to the plan's ``extract`` (a checked getter, then pydantic),
which decides and names the field at fault.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from ocsf_detect.gcpause import gc_paused
from ocsf_detect.ocsf.limits import (
    MAX_EVENT_BYTES,
    MAX_NESTING_DEPTH,
    MAX_PLAUSIBLE_MS,
    MIN_PLAUSIBLE_MS,
)
from ocsf_detect.ocsf.outcomes import (
    JSON_DECODE,
    Parsed,
    ParseOutcome,
    Rejected,
    RejectReason,
    Unsupported,
)


class FieldPlan(Protocol):
    """What the parser needs from a class's feature plan (``features.plan.FieldPlan``)."""

    def extract(self, event: dict[str, Any]) -> tuple[Any, ...] | Rejected: ...

    @property
    def read_json(self) -> Callable[[bytes | str], tuple[Any, ...] | None]:
        """``extract``'s values read from the event's JSON text, or None: must decide."""
        ...


def decode_event(raw: object) -> dict[str, Any] | Rejected:
    """JSON bytes or text to a dict, or a ``Rejected`` saying why not."""
    text = _plain_text(raw)
    if text.__class__ is Rejected:
        return text
    return _decode_text(text)[0]  # type: ignore[arg-type]


def _plain_text(raw: object) -> bytes | str | Rejected:
    """The input as plain bytes or text within the size limit, or why it is not."""
    if raw.__class__ is not bytes:  # bytes, the common case, skips these checks
        if isinstance(raw, _BUFFERS):  # views, and subclasses of bytes: plain bytes
            raw = bytes(raw)
        elif isinstance(raw, str):
            raw = str.__str__(raw)  # a subclass of str: plain text
            size = len(raw)  # characters <= bytes; the exact byte size matters only near the cap
            if (
                size * 4 > MAX_EVENT_BYTES
                and len(raw.encode("utf-8", "surrogatepass")) > MAX_EVENT_BYTES
            ):
                return _too_large(len(raw.encode("utf-8", "surrogatepass")))
            return raw
        elif not isinstance(raw, bytes):
            return Rejected(
                RejectReason.INVALID_INPUT,
                f"expected JSON bytes or text, got {type(raw).__name__}",
            )
    if len(raw) > MAX_EVENT_BYTES:
        return _too_large(len(raw))
    return raw


def _decode_text(text: bytes | str) -> tuple[dict[str, Any] | Rejected, bool]:
    """The event, or why not; and whether ``JSON_DECODE`` read it (so it reads it again,
    as ``Parsed.event`` does with a kept text)."""
    # Kept as text only where the decoder ``Parsed.event`` uses read it.
    kept = _FAST_DECODE is JSON_DECODE
    try:
        event = _FAST_DECODE(text)
    except Exception:
        # Anything msgspec refuses (or could not read: text with lone surrogates, nesting
        # past its recursion limit) takes the reference path, which names the reason.
        return _decode_reference(text), False
    if event.__class__ is not dict:
        return Rejected(
            RejectReason.NOT_AN_OBJECT,
            f"an OCSF event is a JSON object, got a JSON {_json_type(event)}",
        ), kept
    # Counting brackets is C-speed and bounds the depth from above; the exact walk runs
    # only for the few events with many containers. Many events hold no array, and
    # finding none (memchr) costs a fraction of counting.
    brace, bracket = _BRACKETS[text.__class__]
    containers = text.count(brace)
    if text.find(bracket) != -1:
        containers += text.count(bracket)
    if containers > MAX_NESTING_DEPTH:
        return _depth_checked(event), kept
    return event, kept


def _decode_reference(raw: str | bytes) -> dict[str, Any] | Rejected:
    """The reference decoder: orjson, the standard library's exact path for integers
    beyond 64 bits, and a reason for every refusal. ``decode_event`` returns what this
    returns for every input (a property test compares them); it is only slower."""
    shape = (raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw).translate(
        _SHAPE
    )
    exact = _NINETEEN_DIGITS in shape
    try:
        event = _loads(raw, exact=exact)
    except (ValueError, RecursionError) as exc:
        return _classify_decode_error(raw, exc)
    if exact:
        # The standard library accepts escapes of unpaired surrogates, which orjson refuses.
        refused = _unpaired_surrogate(event)
        if refused is not None:
            return refused
    if not isinstance(event, dict):
        return Rejected(
            RejectReason.NOT_AN_OBJECT,
            f"an OCSF event is a JSON object, got a JSON {_json_type(event)}",
        )
    if shape.count(b"{") > MAX_NESTING_DEPTH:
        return _depth_checked(event)
    return event


def _depth_checked(event: dict[str, Any]) -> dict[str, Any] | Rejected:
    depth, path = _max_depth(event)
    if depth > MAX_NESTING_DEPTH:
        return Rejected(
            RejectReason.TOO_DEEP,
            f"nesting depth {depth} exceeds the limit of {MAX_NESTING_DEPTH}",
            field=path,
        )
    return event


def check_object(event: Any) -> Rejected | None:
    """Limits for an event that arrived already decoded (inside an API request body)."""
    if not isinstance(event, dict):
        return Rejected(
            RejectReason.NOT_AN_OBJECT,
            f"an OCSF event is a JSON object, got a JSON {_json_type(event)}",
        )
    # The bracket count of the serialised event bounds its depth from above (orjson
    # serialises in C, far faster than walking the tree in Python); walk only beyond it.
    try:
        text = orjson.dumps(event)
    except (TypeError, orjson.JSONEncodeError):
        # orjson refuses integers beyond 64 bits (kept) and unpaired surrogates (not).
        refused = _unpaired_surrogate(event)
        if refused is not None:
            return refused
        text = None
    if text is not None and text.count(b"{") + text.count(b"[") <= MAX_NESTING_DEPTH:
        return None
    checked = _depth_checked(event)
    return checked if isinstance(checked, Rejected) else None


class EventParser:
    """Parse raw events for the classes in ``plans``; other classes are ``Unsupported``.

    >>> parser = EventParser(plans)            # doctest: +SKIP
    >>> parser.parse(b'{"class_uid": 4001, "time": 1700000000000}').status  # doctest: +SKIP
    'parsed'
    """

    def __init__(
        self, plans: Mapping[int, FieldPlan], unsupported: Mapping[int, Unsupported] | None = None
    ) -> None:
        self._plans = dict(plans)
        self._read_json = {uid: plan.read_json for uid, plan in self._plans.items()}
        # Classes the bundle knows it cannot score, with why: one outcome object each.
        self._unsupported = dict(unsupported or {})

    @property
    def classes(self) -> frozenset[int]:
        return frozenset(self._plans)

    def parse(self, raw: object) -> ParseOutcome:
        try:
            text = _plain_text(raw)
            if text.__class__ is Rejected:
                return text
            decoded, kept = _decode_text(text)  # type: ignore[arg-type]
            if decoded.__class__ is Rejected:
                return decoded
            # The fast path, for a supported class with a plausible time in milliseconds:
            # the plan's values decoded again from the text, by a decoder typed with only
            # the plan's fields (the whole text has just been decoded and checked, so
            # only those fields are left to check). It returns exactly what the plan's
            # ``extract`` returns, or None, and then ``_dispatch`` decides. The event
            # itself is kept as its text, decoded again only if read (``Parsed.event``).
            class_uid = decoded.get("class_uid")  # type: ignore[union-attr]
            time_ms = decoded.get("time")  # type: ignore[union-attr]
            if (
                type(class_uid) is int
                and type(time_ms) is int
                and MIN_PLAUSIBLE_MS <= time_ms <= MAX_PLAUSIBLE_MS
            ):
                read_json = self._read_json.get(class_uid)
                if read_json is not None:
                    values = read_json(text)  # type: ignore[arg-type]  # bytes or text here
                    if values is not None:
                        if kept:
                            return Parsed(class_uid, time_ms, values, text=text)  # type: ignore[arg-type]
                        return Parsed(class_uid, time_ms, values, decoded)  # type: ignore[arg-type]
            return self._dispatch(decoded)  # type: ignore[arg-type]
        except Exception as exc:
            return _unreadable(exc)

    def parse_many(self, raws: Iterable[object]) -> list[ParseOutcome]:
        parse = self.parse
        with gc_paused():
            return [parse(raw) for raw in raws]

    def parse_object(self, event: dict[str, Any]) -> ParseOutcome:
        """Dispatch an already decoded event (the API receives events inside a JSON body)."""
        try:
            return self._dispatch(event)
        except Exception as exc:
            return _unreadable(exc)

    def _dispatch(self, event: dict[str, Any]) -> ParseOutcome:
        class_uid = event.get("class_uid")
        if type(class_uid) is not int:
            class_uid = _coerce_class_uid(class_uid)
            if isinstance(class_uid, Rejected):
                return class_uid
        if not _INT64_MIN <= class_uid <= _INT64_MAX:  # echoed in every outcome and metric
            return Rejected(
                RejectReason.NUMBER_OUT_OF_RANGE,
                "class_uid is beyond 64 bits",
                field="class_uid",
            )
        plan = self._plans.get(class_uid)
        if plan is None:
            return self._unsupported.get(class_uid) or Unsupported(class_uid)
        time_ms = event.get("time")
        if type(time_ms) is not int or not MIN_PLAUSIBLE_MS <= time_ms <= MAX_PLAUSIBLE_MS:
            time_ms = _coerce_time(event)
            if isinstance(time_ms, Rejected):
                return time_ms
        values = plan.extract(event)
        if isinstance(values, Rejected):
            return values
        return Parsed(class_uid, time_ms, values, event)


# msgspec decodes integers of any size exactly and refuses NaN, Infinity, numbers out of
# a double's range and escapes of unpaired surrogates, so one call replaces the reference
# path's digit scan and its second, exact decoder.
_FAST_DECODE = JSON_DECODE  # also what ``Parsed.event`` decodes a kept text with
_BRACKETS: dict[type, tuple[Any, Any]] = {bytes: (b"{", b"["), str: ("{", "[")}
_BUFFERS = (memoryview, bytearray, bytes)

# The shape of a serialised event, one C-speed pass: digits become "0", opening brackets
# "{", everything else a space. A run of 19 digits (a possible integer beyond 64 bits)
# is then a substring search and the container count a byte count; a regex for the
# digits alone costs twice the JSON decode itself.
_SHAPE = bytes(
    0x30 if 0x30 <= b <= 0x39 else 0x7B if b in (0x7B, 0x5B) else 0x20 for b in range(256)
)
_NINETEEN_DIGITS = b"0" * 19


def _unreadable(exc: Exception) -> Rejected:
    """Any failure the checks above did not foresee still ends in an outcome."""
    return Rejected(RejectReason.INVALID_INPUT, f"unreadable input: {exc!r}"[:300])


def _non_finite(token: str) -> float:
    raise ValueError(f"{token} is not a finite number")


def _loads(raw: str | bytes, *, exact: bool) -> Any:
    """orjson, unless ``exact``: where a run of 19+ digits may be an integer beyond 64
    bits, orjson would turn it into a float, and the event must be kept exactly as it
    came (those few events take the standard library's exact, slower path)."""
    if not exact:
        return orjson.loads(raw)
    return json.loads(raw, parse_constant=_non_finite)


def _too_large(size: int) -> Rejected:
    return Rejected(
        RejectReason.TOO_LARGE,
        f"event is {size:,} bytes; the limit is {MAX_EVENT_BYTES:,} (the Kinesis record cap)",
    )


def _classify_decode_error(raw: str | bytes, exc: Exception) -> Rejected:
    if isinstance(raw, bytes):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return Rejected(
                RejectReason.INVALID_ENCODING, f"not UTF-8 at byte {uexc.start}: {uexc.reason}"
            )
    # orjson refuses NaN/Infinity and integers beyond 64 bits; the standard library accepts
    # both, so a second opinion tells those cases apart from plain invalid JSON.
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return Rejected(RejectReason.INVALID_JSON, f"not valid JSON: {exc}"[:300])
    path = _find_non_finite(value, "")
    if path is not None:
        field, number = path
        return Rejected(
            RejectReason.NON_FINITE_NUMBER,
            f"{field or 'value'} is {number}; JSON numbers must be finite",
            field=field or None,
        )
    refused = _unpaired_surrogate(value)
    if refused is not None:
        return refused
    if isinstance(value, list | dict) and _max_depth(value)[0] > MAX_NESTING_DEPTH:
        return Rejected(
            RejectReason.TOO_DEEP, f"nesting deeper than the limit of {MAX_NESTING_DEPTH}"
        )
    return Rejected(RejectReason.INVALID_JSON, f"not valid JSON: {exc}"[:300])


def _unpaired_surrogate(value: Any) -> Rejected | None:
    """Text that is not Unicode: a JSON escape of an unpaired UTF-16 surrogate, which the
    standard library decodes but no UTF-8 encoder (alerts, quarantine) can write out."""
    at = _find_lone_surrogate(value)
    if at is None:
        return None
    return Rejected(
        RejectReason.INVALID_ENCODING,
        f"{at or 'the event'} holds an unpaired UTF-16 surrogate escape",
        field=at or None,
    )


def _find_lone_surrogate(value: Any) -> str | None:
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, at = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                key = f"{at}.{k}" if at else str(k)
                if not _utf8_ok(str(k)):
                    return at  # the object holding the key
                stack.append((v, key))
        elif isinstance(node, list):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(node))
        elif isinstance(node, str) and not _utf8_ok(node):
            return at
    return None


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _find_non_finite(value: Any, path: str) -> tuple[str, float] | None:
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        node, at = stack.pop()
        if isinstance(node, dict):
            stack.extend((v, f"{at}.{k}" if at else str(k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(node))
        elif isinstance(node, float) and not math.isfinite(node):
            return at, node
    return None


def _max_depth(value: Any) -> tuple[int, str]:
    deepest, deepest_path = 0, ""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, at = stack.pop()
        if depth > deepest:
            deepest, deepest_path = depth, at
        if depth > MAX_NESTING_DEPTH + 1:
            continue  # deep enough to reject; no need to walk further down
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, dict | list):
                    stack.append((v, depth + 1, f"{at}.{k}" if at else str(k)))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, dict | list):
                    stack.append((v, depth + 1, f"{at}[{i}]"))
    return deepest, deepest_path


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _coerce_class_uid(value: Any) -> int | Rejected:
    if value is None:
        return Rejected(RejectReason.MISSING_FIELD, "class_uid is required", field="class_uid")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdecimal() and value.strip().isascii():
        return int(value)
    return Rejected(
        RejectReason.WRONG_TYPE,
        f"class_uid must be an integer, got {_json_type(value)}",
        field="class_uid",
    )


def _coerce_time(event: dict[str, Any]) -> int | Rejected:
    """OCSF ``time`` is epoch milliseconds. Tolerated: floats, numeric strings, epoch
    seconds, and ISO 8601 text; ``time_dt`` stands in when ``time`` is absent."""
    value = event.get("time")
    field = "time"
    if value is None and event.get("time_dt") is not None:
        value, field = event["time_dt"], "time_dt"
    if value is None:
        return Rejected(RejectReason.MISSING_FIELD, "time is required", field="time")
    number: float | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return _iso_time_ms(text, value, field)
    if number is None or not math.isfinite(number) or number < 0:
        return Rejected(
            RejectReason.WRONG_TYPE,
            f"{field} must be epoch milliseconds or an ISO 8601 time, got {value!r}"[:200],
            field=field,
        )
    if number < MIN_PLAUSIBLE_MS:
        number *= 1000.0
    if number > MAX_PLAUSIBLE_MS:
        return Rejected(
            RejectReason.NUMBER_OUT_OF_RANGE,
            f"{field} {value!r} is beyond year 9999 in epoch milliseconds"[:200],
            field=field,
        )
    return int(number)


def _iso_time_ms(text: str, value: str, field: str) -> int | Rejected:
    """ISO 8601 text to epoch milliseconds; a time without an offset is UTC."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ms = int(parsed.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        return Rejected(
            RejectReason.WRONG_TYPE,
            f"{field} must be epoch milliseconds or an ISO 8601 time, got {value!r}"[:200],
            field=field,
        )
    if not 0 <= ms <= MAX_PLAUSIBLE_MS:
        return Rejected(
            RejectReason.NUMBER_OUT_OF_RANGE,
            f"{field} {value!r} is outside 1970-01-01 .. 9999-12-31"[:200],
            field=field,
        )
    return ms


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
