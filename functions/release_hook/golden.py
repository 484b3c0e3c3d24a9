"""The release check itself: golden scores from a manifest against a candidate's self-test.

Pure: mappings in, frozen dataclasses out, no AWS and no environment. A candidate
passes when it runs the bundle the release deploys (same bundle_version) and scores every
golden event within tolerance of the score recorded when the bundle was trained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

HookStatus = Literal["Succeeded", "Failed"]


class ReleaseCheckError(Exception):
    """The check could not be run on its inputs; ``field`` names the offending one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ManifestError(ReleaseCheckError):
    """The bundle manifest is missing, unreadable or lacks golden scores."""


class SelfTestResponseError(ReleaseCheckError):
    """The candidate's self-test answer is not ``{"bundle_version": str, "scores": [...]}``."""


@dataclass(frozen=True)
class Tolerance:
    """``|actual - expected| <= absolute + relative * |expected|`` (numpy.isclose's rule)."""

    absolute: float = 1e-3
    relative: float = 1e-3

    def accepts(self, expected: float, actual: float | None) -> bool:
        if actual is None or not (math.isfinite(expected) and math.isfinite(actual)):
            return False
        return abs(actual - expected) <= self.absolute + self.relative * abs(expected)


@dataclass(frozen=True)
class Scores:
    """A bundle_version and one score per golden event, in manifest order.

    A candidate reports None for an event it could not score; that never matches.
    """

    bundle_version: str
    scores: tuple[float | None, ...]


@dataclass(frozen=True)
class ScoreMismatch:
    index: int
    expected: float | None
    actual: float | None


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    mismatches: tuple[ScoreMismatch, ...] = field(default=())

    @property
    def status(self) -> HookStatus:
        return "Succeeded" if self.passed else "Failed"

    @classmethod
    def failed(cls, reason: str) -> Verdict:
        return cls(passed=False, reason=reason)


def golden_from_manifest(manifest: Mapping[str, Any]) -> Scores:
    """The expected scores: ``manifest["golden_events"][i]["score"]`` in order.

    >>> golden_from_manifest({"bundle_version": "1.0.0+ab",
    ...                       "golden_events": [{"class_uid": 3002, "event": {}, "score": 0.5}]})
    Scores(bundle_version='1.0.0+ab', scores=(0.5,))
    """
    version = manifest.get("bundle_version")
    if not isinstance(version, str) or not version:
        raise ManifestError("manifest has no bundle_version", field="bundle_version")
    golden = manifest.get("golden_events")
    if not isinstance(golden, Sequence) or isinstance(golden, str) or not golden:
        raise ManifestError(
            f"manifest of {version} has no golden_events: there is nothing to check the "
            "release against (retrain the bundle; training records them)",
            field="golden_events",
        )
    scores = []
    for index, item in enumerate(golden):
        score = item.get("score") if isinstance(item, Mapping) else None
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise ManifestError(
                f"manifest of {version}: golden_events[{index}].score is missing or not a number",
                field="golden_events",
            )
        scores.append(float(score))
    return Scores(bundle_version=version, scores=tuple(scores))


def selftest_from_response(payload: Any) -> Scores:
    """Parse the candidate's answer to the self-test invocation."""
    if not isinstance(payload, Mapping):
        raise SelfTestResponseError(
            f"self-test answered {type(payload).__name__}, expected an object with "
            "bundle_version and scores",
            field="payload",
        )
    version = payload.get("bundle_version")
    raw_scores = payload.get("scores")
    if not isinstance(version, str):
        raise SelfTestResponseError(
            "self-test answer has no bundle_version", field="bundle_version"
        )
    if not isinstance(raw_scores, list) or not all(
        s is None or (isinstance(s, int | float) and not isinstance(s, bool)) for s in raw_scores
    ):
        raise SelfTestResponseError(
            "self-test answer has no list of scores (numbers, or null for an unscored event)",
            field="scores",
        )
    return Scores(
        bundle_version=version, scores=tuple(None if s is None else float(s) for s in raw_scores)
    )


def compare(
    expected: Scores,
    actual: Scores,
    tolerance: Tolerance = Tolerance(),
    *,
    release_version: str | None = None,
) -> Verdict:
    """Pass when versions agree and every score is within ``tolerance``.

    ``release_version`` is the bundle_version the deployment claims to ship (from the
    stack); when given, the manifest must be that bundle too.
    """
    if release_version is not None and expected.bundle_version != release_version:
        return Verdict.failed(
            f"the manifest describes bundle {expected.bundle_version} but this release "
            f"deploys {release_version}"
        )
    if actual.bundle_version != expected.bundle_version:
        return Verdict.failed(
            f"candidate runs bundle {actual.bundle_version}, expected {expected.bundle_version}"
        )
    if len(actual.scores) != len(expected.scores):
        return Verdict.failed(
            f"candidate returned {len(actual.scores)} scores for "
            f"{len(expected.scores)} golden events"
        )
    mismatches = tuple(
        ScoreMismatch(index=i, expected=e, actual=a)
        for i, (e, a) in enumerate(zip(expected.scores, actual.scores, strict=True))
        if e is None or not tolerance.accepts(e, a)
    )
    if mismatches:
        first = mismatches[0]
        return Verdict(
            passed=False,
            reason=(
                f"{len(mismatches)} of {len(expected.scores)} golden scores differ beyond "
                f"abs {tolerance.absolute:g} + rel {tolerance.relative:g}; first: event "
                f"{first.index} expected {_show(first.expected)}, got {_show(first.actual)}"
            ),
            mismatches=mismatches,
        )
    return Verdict(
        passed=True,
        reason=f"{len(expected.scores)} golden scores of {expected.bundle_version} match",
    )


def _show(score: float | None) -> str:
    return "no score" if score is None else f"{score:.6g}"
