"""The main job on a laptop: generate traffic, train, replay it through the emulated
Kinesis into the real stream function, and report alerts, quality and speed."""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ocsf_detect.detector.scorer import Detector, Scored
from ocsf_detect_tools.evaluation import read_label_table, read_labels
from ocsf_detect_tools.eventio import event_uid


@dataclass
class DemoResult:
    table: list[dict[str, Any]]
    summary: dict[str, Any]
    per_attack: dict[str, tuple[int, int]]  # attack -> (detected, total)
    report: Path


def read_label_rows(path: Path) -> dict[str, tuple[int, str]]:
    """uid -> (is_malicious, attack type) from a labels CSV (``evaluate``'s format, with
    an optional ``attack_type`` or ``label`` column). Raises ``EvaluationError``."""
    malicious = read_labels(path)  # checks the file, its columns and the 1/0 values
    kinds = {r["uid"]: r.get("attack_type") or r.get("label") or "" for r in read_label_table(path)}
    return {uid: (flag, kinds.get(uid, "")) for uid, flag in malicious.items()}


def entity(event: dict[str, Any]) -> str:
    for path in (("src_endpoint", "ip"), ("user", "name"), ("actor", "user", "name")):
        node: Any = event
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node:
            return str(node)
    return "-"


def analyse(
    detector: Detector, lines: list[bytes], labels: dict[str, tuple[int, str]] | None
) -> tuple[list[Scored], dict[str, Any], dict[str, tuple[int, int]]]:
    outcomes = detector.score_batch(lines)
    scored = [o for o in outcomes if isinstance(o, Scored)]
    alerts = [o for o in scored if o.is_anomaly]
    summary: dict[str, Any] = {
        "events": len(lines),
        "scored": len(scored),
        "anomalies": len(alerts),
    }
    per_attack: dict[str, tuple[int, int]] = {}
    if labels:
        found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        tp = 0
        for o in scored:
            mal, kind = labels.get(event_uid(o.event) or "", (0, ""))
            if mal:
                found[kind][1] += 1
                found[kind][0] += int(o.is_anomaly)
                tp += int(o.is_anomaly)
        malicious = sum(t for _, t in found.values())
        summary["precision"] = round(tp / len(alerts), 4) if alerts else 0.0
        summary["recall"] = round(tp / malicious, 4) if malicious else 0.0
        per_attack = {k: (v[0], v[1]) for k, v in sorted(found.items())}
    return scored, summary, per_attack


def top_alerts(
    scored: list[Scored], labels: dict[str, tuple[int, str]] | None, n: int = 15
) -> list[dict[str, Any]]:
    """The highest-scoring alerts, one row per (class, entity) with how many alerts it
    raised: an analyst's queue, not fifteen copies of one brute-force burst."""
    alerts = sorted((o for o in scored if o.is_anomaly), key=lambda o: -o.score / o.threshold)
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for o in alerts:
        key = (o.class_uid, entity(o.event))
        if key in rows:
            rows[key]["alerts"] += 1
            continue
        if len(rows) >= n:
            continue
        _, kind = (labels or {}).get(event_uid(o.event) or "", (0, "-"))
        rows[key] = {
            "time": datetime.fromtimestamp(o.time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M"),
            "class": o.class_uid,
            "entity": key[1],
            "severity": o.severity,
            "score": round(o.score / o.threshold, 2),
            "label": kind or "-",
            "alerts": 1,
        }
    return list(rows.values())


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no alerts)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    head = "  ".join(c.ljust(widths[c]) for c in cols)
    lines = [head, "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols).rstrip() for r in rows]
    return "\n".join(lines)


def write_report(
    path: Path,
    scored: list[Scored],
    summary: dict[str, Any],
    per_attack: dict[str, tuple[int, int]],
    table: list[dict[str, Any]],
    labels: dict[str, tuple[int, str]] | None,
) -> Path:
    """A self-contained HTML page (images inlined as base64 PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def png(fig: Any) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        return base64.b64encode(buf.getvalue()).decode()

    ratio = np.array([o.score / o.threshold for o in scored])
    mal = np.array([(labels or {}).get(event_uid(o.event) or "", (0, ""))[0] for o in scored])
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bins = np.linspace(0, max(3.0, float(np.quantile(ratio, 0.999))), 80).tolist()
    ax.hist(np.clip(ratio[mal == 0], 0, bins[-1]), bins=bins, alpha=0.6, log=True, label="benign")
    if mal.any():
        ax.hist(
            np.clip(ratio[mal == 1], 0, bins[-1]), bins=bins, alpha=0.6, log=True, label="attack"
        )
    ax.axvline(1.0, color="k", ls="--", lw=1, label="threshold")
    ax.set(xlabel="score / threshold", ylabel="events", title="Score distribution")
    ax.legend()
    hist = png(fig)
    times = np.array([o.time_ms for o in scored if o.is_anomaly], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    if times.size:
        hours = (times - times.min()) / 3_600_000
        ax.hist(hours, bins=min(96, max(10, int(hours.max()) + 1)))
    ax.set(xlabel="hours since first alert", ylabel="alerts", title="Alerts over time")
    over_time = png(fig)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    if per_attack:
        kinds = list(per_attack)
        ax.bar(kinds, [d / t if t else 0 for d, t in per_attack.values()])
        ax.tick_params(axis="x", labelrotation=15)
        ax.axhline(0.8, color="k", ls="--", lw=1)
        ax.set_ylim(0, 1.05)
    ax.set(ylabel="recall", title="Recall per attack type at the calibrated threshold")
    recall_png = png(fig)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>"
        for r in table
    )
    head = "".join(f"<th>{html.escape(c)}</th>" for c in (table[0] if table else {}))
    stats = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>ocsf-detect demo</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}td,th{{padding:2px 8px;
text-align:left}}table{{border-collapse:collapse}}tr:nth-child(even){{background:#f4f4f4}}</style>
</head><body><h1>ocsf-detect demo report</h1><h2>Summary</h2><table>{stats}</table>
<h2>Top alerts</h2><table><tr>{head}</tr>{rows}</table>
<img alt="score histogram" src="data:image/png;base64,{hist}">
<img alt="alerts over time" src="data:image/png;base64,{over_time}">
<img alt="recall per attack" src="data:image/png;base64,{recall_png}">
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
