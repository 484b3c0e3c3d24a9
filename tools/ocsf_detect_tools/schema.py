"""The OCSF schema, read offline from the JSON that pydantic-ocsf ships (build side only).

pydantic-ocsf carries the schema of each OCSF release from 1.0 to 1.7 as one JSON file in
the schema's source form: a global attribute dictionary (name -> type, enum), event
classes and objects whose attribute lists override it (an object's own ``type_id``
enum) and extend one another (``extends``). ``OcsfSchema.attribute`` resolves a dotted
path of an event class to its leaf type and enum set, which is all the derived feature
specs need. The runtime never reads the schema: a derived spec reaches it fitted, in the
bundle's manifest.

>>> schema = OcsfSchema.load()                       # doctest: +SKIP
>>> schema.attribute(1007, "process.cmd_line")       # doctest: +SKIP
Attribute(path='process.cmd_line', type='string_t', enum=None, is_array=False)
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

DEFAULT_VERSION: Final = "1.7.0"
_DISTRIBUTION: Final = "pydantic-ocsf"

# A type that names no object is a scalar; these are the scalar types that are numbers.
NUMBER_TYPES: Final = frozenset({"integer_t", "long_t", "float_t", "port_t", "timestamp_t"})


class SchemaUnavailableError(Exception):
    """The schema package is not installed (the ``train`` extra), or lacks a version."""


@dataclass(frozen=True, slots=True)
class Attribute:
    """What the schema says of one attribute path: its scalar type (``string_t``, ...)
    or object name, its enum values when it has a fixed set, and whether it is a list."""

    path: str
    type: str
    enum: tuple[str, ...] | None
    is_array: bool


class OcsfSchema:
    """One OCSF release's schema, resolved on demand."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.version: str = str(data.get("version", "?"))
        self._attrs: dict[str, Any] = data["dictionary"]["attributes"]
        self._objects: dict[str, Any] = data["objects"]
        self._events: dict[str, Any] = data["events"]
        categories = data.get("categories_meta", {}).get("attributes", {})
        self._class_names: dict[int, str] = {}
        for name, event in self._events.items():
            if event.get("uid") is None:
                continue
            category = self._category_of(name)
            cat_uid = categories.get(category, {}).get("uid") if category else None
            if cat_uid is not None:
                self._class_names[int(cat_uid) * 1000 + int(event["uid"])] = name

    @classmethod
    def load(cls, version: str = DEFAULT_VERSION) -> OcsfSchema:
        return _load(version)

    def has_class(self, class_uid: int) -> bool:
        return class_uid in self._class_names

    def attribute(self, class_uid: int, path: str) -> Attribute | None:
        """The leaf of ``path`` in events of ``class_uid``, or None where the schema does
        not define it (a producer's extension, ``unmapped``, a class it does not know)."""
        event = self._class_names.get(class_uid)
        if event is None:
            return None
        owner: tuple[str, str] = ("event", event)
        parts = path.split(".")
        for depth, part in enumerate(parts):
            base = self._attrs.get(part)
            if base is None:
                return None
            override = self._own_attribute(owner, part) or {}
            kind = str(override.get("type") or base.get("type") or "")
            last = depth == len(parts) - 1
            if last:
                enum = override.get("enum") or base.get("enum")
                return Attribute(
                    path=path,
                    type=kind,
                    enum=tuple(str(k) for k in enum) if enum else None,
                    is_array=bool(override.get("is_array", base.get("is_array", False))),
                )
            if kind not in self._objects:
                return None  # a scalar with something below it: not this schema's shape
            owner = ("object", kind)
        return None

    # -- resolution ----------------------------------------------------------------------
    def _category_of(self, event: str) -> str | None:
        seen = set()
        while event and event not in seen:
            seen.add(event)
            node = self._events.get(event, {})
            if node.get("category"):
                return str(node["category"])
            event = node.get("extends")
        return None

    def _own_attribute(self, owner: tuple[str, str], name: str) -> dict[str, Any] | None:
        """The attribute as the event class or object (or what it extends) declares it."""
        table = self._events if owner[0] == "event" else self._objects
        current: str | None = owner[1]
        seen = set()
        while current and current not in seen:
            seen.add(current)
            node = table.get(current) or {}
            attrs = node.get("attributes") or {}
            if isinstance(attrs, dict) and isinstance(attrs.get(name), dict):
                return dict(attrs[name])
            current = node.get("extends")
        return None


def schema_file(version: str) -> Path:
    """Where the installed pydantic-ocsf keeps the JSON of ``version`` (e.g. 1.7.0)."""
    wanted = f"ocsf/schemas/v{version.replace('.', '_')}.json"
    try:
        files = importlib.metadata.files(_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise SchemaUnavailableError(
            f"{_DISTRIBUTION} is not installed; install the train extra "
            "(pip install -e '.[train]') to type derived features from the OCSF schema"
        ) from exc
    for f in files:
        if str(f) == wanted:
            return Path(str(f.locate()))
    raise SchemaUnavailableError(f"{_DISTRIBUTION} has no OCSF schema {version} ({wanted})")


@lru_cache(maxsize=4)
def _load(version: str) -> OcsfSchema:
    return OcsfSchema(json.loads(schema_file(version).read_text(encoding="utf-8")))
