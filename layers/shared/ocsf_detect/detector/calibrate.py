"""Alert threshold and severity bands from held-out baseline scores."""

from __future__ import annotations

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


def calibrate(scores: np.ndarray, alert_rate: float) -> Calibration:
    """Threshold = the (1 - alert_rate) quantile of held-out normal scores, so about
    ``alert_rate`` of normal traffic alerts. Bands: Low from the threshold, Medium from the
    (1 - alert_rate/5) quantile (at most halfway to High), High above every held-out
    score, Critical beyond twice the distance from the threshold to the held-out maximum."""
    if not 0 < alert_rate < 1:
        raise ValueError(f"alert rate must be in (0, 1), got {alert_rate}")
    if scores.size == 0:
        raise ValueError("no held-out scores to calibrate on")
    s = np.sort(scores.astype(np.float64))
    threshold = alert_threshold(s, alert_rate)
    high = float(s[-1]) + 1e-9
    # With few held-out events the (1 - rate/5) quantile is the maximum itself, which
    # would leave Medium empty: it starts at most halfway from the threshold to High.
    quantile = float(np.quantile(s, 1 - alert_rate / 5, method="higher"))
    medium = max(min(quantile, (threshold + high) / 2), threshold)
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
