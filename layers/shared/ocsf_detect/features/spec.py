"""Declarative feature specifications, one per OCSF class.

A spec lists features by kind; ``fit`` fills in what is learned from training data
(vocabularies, hashed-bucket frequencies, scaling, the ``unmapped.*`` fields present in
most events). A fitted spec is plain JSON (``model_dump_json``) and reproduces the same
matrix exactly when loaded back.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Scalar = str | int | float | bool


class _Feature(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="feature name, unique within the class")
    path: str = Field(description="dotted OCSF attribute path, e.g. dst_endpoint.port")

    @field_validator("path")
    @classmethod
    def _path_is_dotted(cls, value: str) -> str:
        if not value or any(not part for part in value.split(".")):
            raise ValueError(f"path {value!r} must be a dotted attribute path like a.b.c")
        return value


class NumericFeature(_Feature):
    """A number. ``log1p`` compresses heavy tails (bytes, durations); values are then
    centred and scaled with statistics fitted on training data, and clipped."""

    kind: Literal["numeric"] = "numeric"
    transform: Literal["log1p", "none"] = "log1p"
    lenient: bool = False
    """A value that is not a number is missing, not a reason to reject the event: for
    producers' own ``unmapped`` fields, which no schema types (chosen automatically)."""


class CategoricalFeature(_Feature):
    """A value from a small set (protocol, status, port). Vocabulary fitted on training
    data: the most frequent values seen at least ``min_count`` times; anything else maps
    to an out-of-vocabulary bucket, an absent value to a missing bucket."""

    kind: Literal["categorical"] = "categorical"
    max_vocab: int = Field(64, ge=1, le=4096)
    min_count: int = Field(2, ge=1)
    vocab: list[Scalar] | None = None


class HashedFeature(_Feature):
    """A high-cardinality value (IP, user, host): hashed into ``buckets`` for the
    embedding, plus its rarity: log frequency in training of a fine-grained hash.

    With ``together_with``, the value is the *pair* of both paths (source address and
    destination port, user and source address): a pair never seen in training is a new
    relationship, a classic sign of scanning, lateral movement or a new C2 channel."""

    kind: Literal["hashed"] = "hashed"
    together_with: str | None = None
    buckets: int = Field(64, ge=2, le=65536)
    rarity_bits: int = Field(14, ge=4, le=20)
    counts: dict[int, int] | None = None  # fine hash -> training count (sparse)
    total: int | None = None


class AddressFeature(_Feature):
    """Derived: the scope of an IP address (private, public, loopback, ...)."""

    kind: Literal["address"] = "address"


class PortFeature(_Feature):
    """Derived: the class of a port number (well-known, registered, ephemeral)."""

    kind: Literal["port_class"] = "port_class"


class HourFeature(_Feature):
    """Derived: hour of day of an epoch-ms timestamp, as a point on a circle (sin, cos)."""

    kind: Literal["hour_of_day"] = "hour_of_day"
    path: str = "time"


class RatioFeature(_Feature):
    """Derived from two numbers a (``path``) and b (``other``). ``share`` is a / (a + b),
    the share of one quantity in a pair (bytes out of all bytes); ``per`` is a / b
    (bytes per packet), log-compressed. Missing when the inputs are."""

    kind: Literal["ratio"] = "ratio"
    other: str
    mode: Literal["share", "per"] = "share"


class NovelAmountFeature(_Feature):
    """Derived: an amount (``path``, e.g. bytes out), log-compressed and scaled like a
    numeric feature, then weighted by how new its counterpart is: times
    1 / (1 + the training count of the hashed feature ``of``, e.g. the destination).

    A transfer the size of a routine backup is unremarkable to the backup server and
    alarming to an address never seen before. As two separate columns (volume, rarity),
    that combination is only a sum of two ordinary gaps, which a distance barely notices;
    as one column it is the largest value the feature takes. Missing when the amount
    or the counterpart is."""

    kind: Literal["novel_amount"] = "novel_amount"
    of: str = Field(description="name of a hashed feature of the same class: the counterpart")


class TextFeature(_Feature):
    """Derived: shape of a string (length, dot-separated labels, character entropy, digit
    share): DNS tunnelling and generated names show up here."""

    kind: Literal["text_stats"] = "text_stats"


class CountFeature(_Feature):
    """Derived: number of elements of a list (DNS answers, API resources)."""

    kind: Literal["count"] = "count"


Feature = Annotated[
    NumericFeature
    | CategoricalFeature
    | HashedFeature
    | AddressFeature
    | PortFeature
    | HourFeature
    | RatioFeature
    | NovelAmountFeature
    | TextFeature
    | CountFeature,
    Field(discriminator="kind"),
]


class UnmappedConfig(BaseModel):
    """Which numeric ``unmapped.*`` fields become features. By default, those numeric in at
    least ``min_coverage`` of training events (real producers put much signal there)."""

    model_config = ConfigDict(extra="forbid")

    auto: bool = True
    min_coverage: float = Field(0.5, ge=0.0, le=1.0)
    max_fields: int = Field(64, ge=0, le=512)
    include: list[str] = Field(default_factory=list, description="paths under unmapped to add")
    exclude: list[str] = Field(default_factory=list, description="paths under unmapped to skip")
    selected: list[str] | None = None  # fitted: the paths chosen


class NumericStats(BaseModel):
    """Fitted per numeric column: centre and scale (robust), share missing in training."""

    model_config = ConfigDict(extra="forbid")

    center: float
    scale: float
    missing: float


class ClassSpec(BaseModel):
    """The feature specification of one OCSF class, fitted or not."""

    model_config = ConfigDict(extra="forbid")

    class_uid: int
    features: list[Feature]
    unmapped: UnmappedConfig = Field(default_factory=UnmappedConfig)
    clip: float = Field(8.0, gt=0, description="clip scaled numeric values to [-clip, clip]")
    numeric_stats: list[NumericStats] | None = None  # fitted, one per numeric column

    @field_validator("features")
    @classmethod
    def _unique_names(cls, value: list[Any]) -> list[Any]:
        names = [f.name for f in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate feature names: {', '.join(dupes)}")
        return value

    @model_validator(mode="after")
    def _counterparts_are_hashed(self) -> ClassSpec:
        hashed = {f.name for f in self.features if isinstance(f, HashedFeature)}
        for f in self.features:
            if isinstance(f, NovelAmountFeature) and f.of not in hashed:
                raise ValueError(
                    f"feature {f.name!r}: 'of' must name a hashed feature of this class "
                    f"({', '.join(sorted(hashed)) or 'there is none'}), not {f.of!r}"
                )
        return self

    @property
    def fitted(self) -> bool:
        return self.numeric_stats is not None
