"""What a run found, for a person: the summary, the top alerts per entity, the score
distribution, alerts over time and, with labels, recall per label, as a table on the
terminal and a self-contained HTML page. ``ocsf-detect report`` and ``ocsf-detect demo``
both write it."""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ocsf_detect.detector.scorer import Detector, Scored
from ocsf_detect.ocsf.outcomes import Rejected, Unsupported
from ocsf_detect_tools.evaluation import read_label_table, read_labels
from ocsf_detect_tools.eventio import event_uid


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
    """Score ``lines``: the scored outcomes, a summary (counts; precision and recall at
    the calibrated threshold with labels) and per label (attack type), (found, total)."""
    outcomes = detector.score_batch(lines)
    scored = [o for o in outcomes if isinstance(o, Scored)]
    alerts = [o for o in scored if o.is_anomaly]
    summary: dict[str, Any] = {
        "events": len(lines),
        "scored": len(scored),
        "anomalies": len(alerts),
    }
    unsupported = sum(isinstance(o, Unsupported) for o in outcomes)
    rejected = sum(isinstance(o, Rejected) for o in outcomes)
    if unsupported or rejected:
        summary.update(unsupported=unsupported, rejected=rejected)
    per_attack: dict[str, tuple[int, int]] = {}
    if labels:
        found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        tp = 0
        for o in scored:
            mal, kind = labels.get(event_uid(o.event) or "", (0, ""))
            if mal:
                kind = kind or "malicious"  # a labels file without attack types
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


def group_rows(
    findings: list[dict[str, Any]], labels: dict[str, tuple[int, str]] | None, n: int = 15
) -> list[dict[str, Any]]:
    """The alert groups as a subscriber received them (the SNS messages of a replay): one
    row per group from its latest message, highest score first, with the label of an
    anomaly it carries and why its latest explained anomaly fired."""
    latest: dict[str, dict[str, Any]] = {}
    label: dict[str, str] = {}
    explained: dict[str, tuple[int, list[dict[str, Any]]]] = {}
    for f in findings:
        group = (f.get("unmapped") or {}).get("group")
        if not group:
            continue
        uid = group["uid"]
        if uid not in latest or group["count"] >= latest[uid]["unmapped"]["group"]["count"]:
            latest[uid] = f
        # A closing message carries the group's figures, not an anomaly: the explanation
        # shown is that of the latest message about an anomaly.
        reasons = f["unmapped"].get("explanation")
        if reasons and (uid not in explained or group["count"] >= explained[uid][0]):
            explained[uid] = (group["count"], reasons)
        evidence = f.get("evidences") or []
        if evidence and uid not in label:
            _, kind = (labels or {}).get(event_uid(evidence[0].get("data") or {}) or "", (0, "-"))
            label[uid] = kind or "-"
    rows = []
    for uid, f in latest.items():
        group = f["unmapped"]["group"]
        why = [r.get("text", "") for r in explained.get(uid, (0, []))[1][:2]]
        rows.append(
            {
                "first seen": datetime.fromtimestamp(group["first_seen_time"] / 1000, UTC).strftime(
                    "%Y-%m-%d %H:%M"
                ),
                "class": group["source_class_uid"],
                "entity": group["entity"].split("=", 1)[-1],
                "anomalies": group["count"],
                "severity": f.get("severity", "-"),
                "score": group["max_score_ratio"],
                "label": label.get(uid, "-"),
                "why": "; ".join(w for w in why if w) or "-",
            }
        )
    rows.sort(key=lambda r: (-r["score"], -r["anomalies"]))
    return rows[:n]


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
    title: str = "ocsf-detect demo report",
    groups: list[dict[str, Any]] | None = None,
    grouping: dict[str, Any] | None = None,
) -> Path:
    """A self-contained HTML page (images inlined as base64 PNG), written under a
    temporary name and renamed when complete. Sections, each an ``<section id>``:
    summary, top-alerts, (with ``grouping``, the stream's counts, and ``groups``, its
    grouped alerts) alert-groups, scores, alerts-over-time and, with labels, recall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ocsf_detect_tools.eventio import atomic_path

    def png(fig: Any) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        return base64.b64encode(buf.getvalue()).decode()

    ratio = np.array([o.score / o.threshold for o in scored])
    mal = np.array([(labels or {}).get(event_uid(o.event) or "", (0, ""))[0] for o in scored])
    fig, ax = plt.subplots(figsize=(7, 3.2))
    top = max(3.0, float(np.quantile(ratio, 0.999))) if ratio.size else 3.0
    bins = np.linspace(0, top, 80).tolist()
    ax.hist(np.clip(ratio[mal == 0], 0, top), bins=bins, alpha=0.6, log=True, label="benign")
    if mal.any():
        ax.hist(np.clip(ratio[mal == 1], 0, top), bins=bins, alpha=0.6, log=True, label="attack")
    ax.axvline(1.0, color="k", ls="--", lw=1, label="threshold")
    ax.set(
        xlabel="score / its class's threshold (1 = alert; clipped at the right edge)",
        ylabel="events (log scale)",
        title="Score distribution",
    )
    ax.legend()
    hist = png(fig)
    times = np.array([o.time_ms for o in scored if o.is_anomaly], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    if times.size:
        hours = (times - times.min()) / 3_600_000
        ax.hist(hours, bins=min(96, max(10, int(hours.max()) + 1)))
    ax.set(xlabel="hours since the first alert", ylabel="alerts", title="Alerts over time")
    over_time = png(fig)
    sections = [
        ("summary", "Summary", _table_html([{"": k, "value": v} for k, v in summary.items()])),
        (
            "top-alerts",
            "Top alerts (score relative to the threshold; one row per class and entity)",
            _table_html(table) if table else "<p>No alerts.</p>",
        ),
        *(
            [
                (
                    "alert-groups",
                    "Raw anomalies and alert groups (what the stream published)",
                    _table_html([{"": k, "value": v} for k, v in grouping.items()])
                    + (_table_html(groups) if groups else "<p>No alert group was published.</p>"),
                )
            ]
            if grouping is not None
            else []
        ),
        ("scores", "Score distribution", _img("score histogram", hist)),
        ("alerts-over-time", "Alerts over time", _img("alerts over time", over_time)),
    ]
    if labels:
        fig, ax = plt.subplots(figsize=(7, 2.8))
        if per_attack:
            kinds = list(per_attack)
            ax.bar(kinds, [d / t if t else 0 for d, t in per_attack.values()])
            ax.tick_params(axis="x", labelrotation=15)
            ax.axhline(0.8, color="k", ls="--", lw=1)
        ax.set_ylim(0, 1.05)
        ax.set(ylabel="recall (share detected)", title="Recall per label at the threshold")
        rows = [
            {"label": k, "detected": d, "total": t, "recall": f"{d / t:.2f}" if t else "-"}
            for k, (d, t) in per_attack.items()
        ]
        body = _img("recall per label", png(fig)) + (
            _table_html(rows) if rows else "<p>No malicious event was scored.</p>"
        )
        sections.append(("recall", "Recall per label", body))
    content = "".join(
        f'<section id="{sid}"><h2>{html.escape(name)}</h2>{body}</section>'
        for sid, name, body in sections
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}td,th{{padding:2px 8px;
text-align:left}}table{{border-collapse:collapse}}tr:nth-child(even){{background:#f4f4f4}}
img{{max-width:100%}}</style>
</head><body><h1>{html.escape(title)}</h1>{content}</body></html>"""
    with atomic_path(path) as partial:
        partial.write_text(page, encoding="utf-8")
    return path


def _table_html(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0]) if rows else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(alt: str, png_b64: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png_b64}">'
