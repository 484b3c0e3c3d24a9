"""Field plans: validate exactly the fields a class's features use, in one pass.

A plan is built from the dotted paths the features read. It compiles a pydantic
``TypeAdapter`` over a nested ``TypedDict`` holding only those paths (pydantic-core
ignores everything else, fast) and a getter that returns the validated values as one
tuple, in path order. Optional fields are normal: absent or null values come back as
``None``. A value of the wrong type is a ``Rejected`` naming the field.

For the parser's hot path a plan also reads its values straight from the event's JSON
text (``read_json``): a msgspec decoder typed with the plan's paths only, which answers
for well-typed events and leaves every other one to ``extract``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Annotated, Any

import msgspec
from pydantic import ConfigDict, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from ocsf_detect.ocsf.outcomes import Rejected, RejectReason


class ValueType(IntEnum):
    """What a path must hold. When features disagree on a path, the higher value wins."""

    ANY = 0  # anything: the feature reads what it can and treats the rest as missing
    SCALAR = 1  # string, number or boolean (categories, identifiers, text)
    NUMBER = 2  # a finite number; numeric strings are accepted
    LIST = 3  # an array (only its length is used)


_LEAF_TYPES: dict[ValueType, Any] = {
    ValueType.ANY: Any,
    ValueType.SCALAR: str | int | float | bool | None,
    ValueType.NUMBER: float | None,
    ValueType.LIST: list[Any] | None,
}

_CONFIG = ConfigDict(extra="ignore", allow_inf_nan=False, str_max_length=65536)


class FieldPlan:
    """``FieldPlan({"src_endpoint.ip": ValueType.SCALAR, ...}).extract(event)``."""

    def __init__(self, paths: dict[str, ValueType]) -> None:
        self.paths: tuple[str, ...] = tuple(paths)
        self.types: tuple[ValueType, ...] = tuple(paths.values())
        self._types = dict(paths)
        self._adapter: TypeAdapter[Any] = TypeAdapter(_typed_dict("Event", _tree(paths)))
        self._getter = _compile_getter(self.paths)
        self._checked = _compile_checked_getter(self.paths, self.types)
        self.read_json: Callable[[bytes | str], tuple[Any, ...] | None] = _compile_json_reader(
            self.paths, self.types
        )
        """The plan's values decoded from the JSON text of an event, or ``None`` where
        ``extract`` must decide. Where it answers, it returns exactly what ``extract``
        returns for the decoded event (a property test compares them); the caller must
        have decoded the whole text first, since fields outside the plan are skipped
        unchecked."""

    def index(self, path: str) -> int:
        return self.paths.index(path)

    def extract(self, event: dict[str, Any]) -> tuple[Any, ...] | Rejected:
        """The plan's values from a decoded event, or why the event cannot be used."""
        values = self._checked(event)
        if values is not None:
            return values
        # Anything the checked getter is not sure of (a numeric string, a boolean for a
        # number, a value of the wrong type, ...): pydantic decides, and names the field.
        try:
            validated = self._adapter.validate_python(event)
        except ValidationError as exc:
            return _rejection(exc, self._types)
        return self._getter(validated)


def merge_paths(items: Sequence[tuple[str, ValueType]]) -> dict[str, ValueType]:
    merged: dict[str, ValueType] = {}
    for path, vtype in items:
        merged[path] = max(merged.get(path, vtype), vtype)
    # A path cannot be both a leaf and an object (e.g. "a" and "a.b"): the object wins.
    return {p: t for p, t in merged.items() if not any(q.startswith(p + ".") for q in merged)}


def _tree(paths: dict[str, ValueType]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path, vtype in paths.items():
        node = root
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = vtype
    return root


def _typed_dict(name: str, tree: dict[str, Any]) -> Any:
    fields: dict[str, Any] = {}
    for i, (key, sub) in enumerate(tree.items()):
        if isinstance(sub, dict):
            fields[key] = _typed_dict(f"{name}_{i}", sub) | None
        else:
            fields[key] = _LEAF_TYPES[sub]
    td = TypedDict(name, fields, total=False)  # type: ignore[misc]
    td.__pydantic_config__ = _CONFIG  # type: ignore[attr-defined]
    return td


def _object_names(paths: tuple[str, ...]) -> dict[str, tuple[str, str, str]]:
    """Each object on the way to the paths' leaves, parents first: its dotted prefix ->
    (its variable in generated code, its parent's variable, its key); "" is the event."""
    names: dict[str, tuple[str, str, str]] = {"": ("d", "", "")}
    for path in paths:
        parts = path.split(".")
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if prefix not in names:
                parent = names[".".join(parts[: depth - 1])][0]
                names[prefix] = (f"o{len(names)}", parent, parts[depth - 1])
    return names


def _compile_getter(paths: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """Generate ``lambda d: (d.get("a") or E).get("b"), ...`` as one function.

    Code generation keeps the per-event cost to one call: intermediate objects are read
    once and shared by every path below them. Keys are embedded with ``repr``.
    """
    lines = ["def getter(d):"]
    names = _object_names(paths)
    for name, parent, key in list(names.values())[1:]:  # the event itself is "d"
        lines.append(f"    {name} = {parent}.get({key!r}) or EMPTY")
    items = []
    for path in paths:
        parts = path.split(".")
        parent = names[".".join(parts[:-1])][0]
        items.append(f"{parent}.get({parts[-1]!r})")
    lines.append(f"    return ({', '.join(items)}{',' if len(items) == 1 else ''})")
    namespace: dict[str, Any] = {"EMPTY": {}}
    exec("\n".join(lines), namespace)
    getter: Callable[[dict[str, Any]], tuple[Any, ...]] = namespace["getter"]
    return getter


_MAX_STR = _CONFIG["str_max_length"]
_SCALARS = frozenset({str, int, float, bool, type(None)})
_INT_AS_FLOAT = 1 << 64  # orjson's integers; larger ones (the exact path) go to pydantic


def _compile_checked_getter(
    paths: tuple[str, ...], types: tuple[ValueType, ...]
) -> Callable[[dict[str, Any]], tuple[Any, ...] | None]:
    """The plan's values without pydantic, for events whose fields already have the types
    the plan asks for (nearly all of them), or ``None`` where pydantic must decide.

    It accepts only what the ``TypeAdapter`` returns unchanged or converts exactly the
    same way (an integer read as a number becomes a float; text only when ASCII, which
    CPython knows without reading it, since pydantic refuses unpaired surrogates), so an
    event's outcome never
    depends on which of the two read it; a test compares them on generated and hostile
    events. Generated like ``_compile_getter``: one call per event, no per-field loop.
    """
    lines = ["def checked(d):"]
    names = _object_names(paths)
    for name, parent, key in list(names.values())[1:]:  # the event itself is "d"
        lines += [
            f"    {name} = {parent}.get({key!r})",
            f"    if {name} is None:",
            f"        {name} = EMPTY",
            f"    elif {name}.__class__ is not dict:",
            "        return None",
        ]
    items = []
    for i, (path, vtype) in enumerate(zip(paths, types, strict=True)):
        parts = path.split(".")
        parent = names[".".join(parts[:-1])][0]
        value = f"v{i}"
        items.append(value)
        lines.append(f"    {value} = {parent}.get({parts[-1]!r})")
        if vtype is ValueType.SCALAR:
            lines += [
                f"    c = {value}.__class__",
                "    if c not in SCALARS:",
                "        return None",
                f"    if c is str and (len({value}) > MAX_STR or not {value}.isascii()):",
                "        return None",
                f"    if c is float and {value} - {value} != 0.0:",  # inf or nan
                "        return None",
            ]
        elif vtype is ValueType.NUMBER:
            lines += [
                f"    c = {value}.__class__",
                "    if c is float:",
                f"        if {value} - {value} != 0.0:",  # inf or nan
                "            return None",
                "    elif c is int:",
                f"        if not -BIG < {value} < BIG:",
                "            return None",
                f"        {value} = float({value})",
                f"    elif {value} is not None:",
                "        return None",
            ]
        elif vtype is ValueType.LIST:
            lines += [
                f"    if {value} is not None and {value}.__class__ is not list:",
                "        return None",
            ]
    lines.append(f"    return ({', '.join(items)}{',' if len(items) == 1 else ''})")
    namespace: dict[str, Any] = {
        "EMPTY": {},
        "SCALARS": _SCALARS,
        "MAX_STR": _MAX_STR,
        "BIG": _INT_AS_FLOAT,
    }
    exec("\n".join(lines), namespace)
    checked: Callable[[dict[str, Any]], tuple[Any, ...] | None] = namespace["checked"]
    return checked


# What msgspec accepts for each kind of path, chosen so that it accepts only values the
# ``TypeAdapter`` returns the same (integers read as numbers become floats, rounded as
# ``float(int)`` rounds them and refused where that overflows); anything else raises and
# the reader answers None.
_JSON_LEAF_TYPES: dict[ValueType, Any] = {
    ValueType.ANY: Any,
    ValueType.SCALAR: Annotated[str, msgspec.Meta(max_length=_MAX_STR)] | int | float | bool | None,
    ValueType.NUMBER: float | None,
    ValueType.LIST: list[Any] | None,
}


def _json_structs(
    tree: dict[str, Any],
    attrs: dict[tuple[str, str], str],
    structs: dict[str, type[msgspec.Struct]],
    prefix: str = "",
) -> type[msgspec.Struct]:
    """A msgspec ``Struct`` per object of ``tree`` (nested like the event), holding only
    the plan's keys. Fills ``attrs``: (object's dotted prefix, key) -> attribute name, and
    ``structs``: object's dotted prefix -> its ``Struct`` ("" is the event). Attributes
    are ``f0, f1, ...`` renamed to the event's keys, so that any key works."""
    fields: list[tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    for i, (key, sub) in enumerate(tree.items()):
        attr = f"f{i}"
        attrs[(prefix, key)] = attr
        rename[attr] = key
        if isinstance(sub, dict):
            child = f"{prefix}.{key}" if prefix else key
            fields.append((attr, _json_structs(sub, attrs, structs, child) | None, None))
        else:
            fields.append((attr, _JSON_LEAF_TYPES[sub], None))
    # gc=False: decoded JSON holds no cycles, and these objects live for one event.
    struct = msgspec.defstruct(f"Fields_{len(structs)}", fields, rename=rename, gc=False)
    structs[prefix] = struct
    return struct


def _compile_json_reader(
    paths: tuple[str, ...], types: tuple[ValueType, ...]
) -> Callable[[bytes | str], tuple[Any, ...] | None]:
    """Generate ``read(raw)``: one typed msgspec decode of only the plan's fields, then
    the values in path order (an absent or null object reads as an empty one), or
    ``None`` where msgspec refuses the text (and ``extract`` must decide)."""
    attrs: dict[tuple[str, str], str] = {}
    structs: dict[str, type[msgspec.Struct]] = {}
    root = _json_structs(_tree(dict(zip(paths, types, strict=True))), attrs, structs)
    names = _object_names(paths)
    namespace: dict[str, Any] = {"decode": msgspec.json.Decoder(root).decode}
    lines = [
        "def read(raw):",
        "    try:",
        "        d = decode(raw)",
        "    except Exception:",  # msgspec's ValidationError and DecodeError
        "        return None",
    ]
    for prefix, (name, parent, key) in list(names.items())[1:]:  # the event itself is "d"
        namespace[f"EMPTY_{name}"] = structs[prefix]()
        lines += [
            f"    {name} = {parent}.{attrs[(prefix.rpartition('.')[0], key)]}",
            f"    if {name} is None:",
            f"        {name} = EMPTY_{name}",
        ]
    items = []
    for path in paths:
        prefix, _, key = path.rpartition(".")
        items.append(f"{names[prefix][0]}.{attrs[(prefix, key)]}")
    lines.append(f"    return ({', '.join(items)}{',' if len(items) == 1 else ''})")
    exec("\n".join(lines), namespace)
    read: Callable[[bytes | str], tuple[Any, ...] | None] = namespace["read"]
    return read


_EXPECTED = {
    ValueType.SCALAR: "a string, number or boolean",
    ValueType.NUMBER: "a finite number",
    ValueType.LIST: "an array",
}


def _rejection(exc: ValidationError, types: dict[str, ValueType]) -> Rejected:
    """Name the event's own field (pydantic adds union member tags to locations)."""
    first = exc.errors(include_url=False, include_input=False)[0]
    parts = [str(part) for part in first["loc"]]
    field = None
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in types:
            field = candidate
            break
        if any(p.startswith(candidate + ".") for p in types):
            field = candidate
            return Rejected(RejectReason.WRONG_TYPE, f"{field} must be an object", field=field)
    if field is None:
        return Rejected(RejectReason.WRONG_TYPE, f"event: {first['msg']}"[:300])
    detail = first["msg"] if types[field] is ValueType.NUMBER else ""
    message = f"{field} must be {_EXPECTED[types[field]]}" + (f" ({detail})" if detail else "")
    return Rejected(RejectReason.WRONG_TYPE, message[:300], field=field)
