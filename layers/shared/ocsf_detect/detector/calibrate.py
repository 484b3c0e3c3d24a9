"""Alert threshold and severity bands from held-out baseline scores."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict

# OCSF severity_id values.
SEVERITY_NAMES = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}


class SeverityBand(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    severity_id: int
    severity: str
    min_score: float


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float
    alert_rate: float
    bands: list[SeverityBand]  # ascending min_score; the first is the threshold
    heldout_events: int


# The empirical quantile is used where at least this many held-out events lie beyond it;
# below that it is one or two order statistics, and the tail model decides (threshold_for).
MIN_EXCEEDANCES = 10
TAIL_START = 0.9  # the tail model is fitted to the held-out scores above this quantile


def calibrate(scores: np.ndarray, alert_rate: float) -> Calibration:
    """Threshold = the score that about ``alert_rate`` of normal traffic reaches, from the
    held-out normal scores (``threshold_for``). Bands: Low from the threshold; Medium from
    where a fifth of that rate is reached (the (1 - alert_rate/5) quantile, at most halfway
    to High; with the tail, its step for a fifth of the rate beyond the threshold); High
    above every held-out score (with the tail, also its step for a 25th); Critical beyond
    twice the distance from the threshold to High."""
    if not 0 < alert_rate < 1:
        raise ValueError(f"alert rate must be in (0, 1), got {alert_rate}")
    if scores.size == 0:
        raise ValueError("no held-out scores to calibrate on")
    s = np.sort(scores.astype(np.float64))
    tail = _tail(s, alert_rate)
    if tail is None:
        threshold = alert_threshold(s, alert_rate)
        high = float(s[-1]) + 1e-9
        # With few held-out events the (1 - rate/5) quantile is the maximum itself, which
        # would leave Medium empty: it starts at most halfway from the threshold to High.
        quantile = float(np.quantile(s, 1 - alert_rate / 5, method="higher"))
        medium = max(min(quantile, (threshold + high) / 2), threshold)
    else:
        # the tail's steps from the threshold: a fifth and a 25th of the rate beyond it
        threshold = threshold_for(s, alert_rate)
        medium = _float32_at_least(threshold + tail.scale * math.log(5))
        high = max(float(s[-1]) + 1e-9, _float32_at_least(threshold + tail.scale * math.log(25)))
    critical = high + max(high - threshold, 1e-6)
    bands = [
        SeverityBand(severity_id=2, severity="Low", min_score=threshold),
        SeverityBand(severity_id=3, severity="Medium", min_score=medium),
        SeverityBand(severity_id=4, severity="High", min_score=high),
        SeverityBand(severity_id=5, severity="Critical", min_score=critical),
    ]
    return Calibration(
        threshold=threshold, alert_rate=alert_rate, bands=bands, heldout_events=int(s.size)
    )


def threshold_for(scores: np.ndarray, alert_rate: float) -> float:
    """The alert threshold for ``alert_rate`` from held-out normal ``scores``.

    With enough held-out events (``MIN_EXCEEDANCES`` or more expected beyond the
    threshold), the empirical (1 - alert_rate) quantile (``alert_threshold``). With fewer,
    that quantile is the maximum or the one below it, and moves with whichever single
    event happened to be held out: a 200-event held-out set at a 0.5% rate puts the
    threshold on its top score, and a held-out set whose top events happen to score low
    sets it low, and false alarms follow. The tail (``_Tail``: peaks over threshold,
    exponential), which every event of the top tenth informs, is the second estimate,
    and the threshold is the higher of the two: each can land low by chance (the order
    statistic as above, the exponential tail where the real one is heavier), and a
    threshold set too low floods the team with false alarms where one set as much too
    high misses only the events just above it."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    empirical = alert_threshold(s, alert_rate)
    tail = _tail(s, alert_rate)
    return empirical if tail is None else max(empirical, tail.reaching(alert_rate))


class _Tail:
    """The held-out scores above their ``TAIL_START`` quantile ``u`` as an exponential
    tail: P(score >= u + x) = (1 - TAIL_START) * exp(-x / scale), the scale being their
    mean excess over u."""

    def __init__(self, u: float, scale: float) -> None:
        self.u, self.scale = u, scale

    def reaching(self, rate: float) -> float:
        """The score that a share ``rate`` of normal events reaches (as a float32)."""
        return _float32_at_least(self.u + self.scale * math.log((1 - TAIL_START) / rate))


def _tail(s: np.ndarray, alert_rate: float) -> _Tail | None:
    """The tail model of sorted held-out scores ``s``, or None where the empirical quantile
    rests on enough events, the rate is not in the tail, or the tail is degenerate
    (repetitive traffic: the top tenth all equal; ``alert_threshold`` handles ties)."""
    if s.size * alert_rate >= MIN_EXCEEDANCES or alert_rate >= 1 - TAIL_START:
        return None
    u = float(np.quantile(s, TAIL_START))
    excess = s[s > u] - u
    if excess.size == 0 or float(excess.mean()) <= 1e-6 * max(abs(u), 1.0):
        return None
    tail = _Tail(u, float(excess.mean()))
    # above zero, the score of an event identical to its neighbours
    return tail if tail.reaching(alert_rate) > 0 else None


def alert_threshold(scores: np.ndarray, alert_rate: float) -> float:
    """The (1 - alert_rate) quantile of ``scores`` (as a float32), alerting at
    ``score >= threshold``.
    Where many scores tie at that quantile (repetitive traffic), every tied event would
    alert, far above the rate: the threshold then moves just above the tie. It is always
    above zero, the score of an event identical to its neighbours."""
    threshold = _float32_at_least(float(np.quantile(scores, 1 - alert_rate, method="higher")))
    alerting = float(np.mean(scores >= threshold))
    if threshold <= 0 or alerting > 2 * alert_rate + 1 / scores.size:
        step = np.nextafter(np.float32(max(threshold, 0.0)), np.float32(np.inf))
        threshold = float(step)
    return threshold


def _float32_at_least(value: float) -> float:
    """The smallest float32 >= ``value``. Served scores are float32 and are compared with
    the threshold in float32, severity bands in float64: a threshold both can represent
    gives both comparisons the same answer (no anomaly below the first band)."""
    single = np.float32(value)
    if float(single) < value:
        single = np.nextafter(single, np.float32(np.inf))
    return float(single)


def severity_ids(scores: np.ndarray, bands: list[SeverityBand]) -> np.ndarray:
    """Vectorised: severity_id per score (1 Informational below the first band)."""
    edges = np.array([b.min_score for b in bands])
    ids = np.array([1] + [b.severity_id for b in bands])
    return ids[np.searchsorted(edges, scores, side="right")]
