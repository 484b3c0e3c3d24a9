"""What each grouping policy would publish for a scored set: anomalies, groups and
notifications per channel, side by side, from the stream function's own grouping code
(``ocsf_detect_tools.groupsim``: the group table in memory, no AWS).

The events are scored by the bundle, each anomaly gets the finding the stream function
would build, and every policy counts the same anomalies. With ``--labels`` (the
``live.labels.csv`` of ``ocsf-detect generate``) it also reports, per policy, the attack
types none of whose groups ever spoke, the attack anomalies in groups that never spoke,
and how many opening messages were about events labelled benign. The default policy is
the first row; the others each change a few settings, so the trade-offs read off the
table.

    python benchmarks/grouping_policies.py --bundle demo-out/bundle \\
        --events demo-out/live.jsonl.gz --labels demo-out/live.labels.csv \\
        [--key 1007=actor.process.file.name,process.file.name] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from ocsf_detect.detector.scorer import Detector, Scored
from ocsf_detect.findings import build_finding, event_uid_of
from ocsf_detect.grouping import GroupingPolicy, anomaly_of
from ocsf_detect_tools.eventio import read_lines
from ocsf_detect_tools.groupsim import simulate

HOUR = 3600
POLICIES: dict[str, dict[str, Any]] = {
    "default (24 h windows, speak at 2, hourly updates)": {},
    "updates at most every 15 min": {"update_interval_s": 15 * 60},
    "speak at 3 anomalies": {"notify_min_count": 3},
    "1 h windows, speak at 2": {"window_s": HOUR},
    "24 h windows, speak at the first": {"notify_min_count": 1},
    "1 h windows, speak at the first": {"window_s": HOUR, "notify_min_count": 1},
    "1 h, first, from Medium": {
        "window_s": HOUR,
        "notify_min_count": 1,
        "notify_min_severity_id": 3,
    },
}


def parse_key(text: str) -> tuple[int, tuple[str, ...]]:
    class_text, _, fields = text.partition("=")
    if not class_text.isdigit() or not fields:
        raise argparse.ArgumentTypeError(f"{text!r}: give CLASS_UID=field[,field...]")
    return int(class_text), tuple(f for f in fields.split(",") if f)


def anomalies(bundle: Path, events: Path) -> tuple[list[Any], int]:
    detector = Detector.load(bundle)
    lines = read_lines(events)
    out = []
    for i, scored in enumerate(detector.score_batch(lines)):
        if isinstance(scored, Scored) and scored.is_anomaly:
            finding = build_finding(
                scored,
                bundle_version=detector.bundle_version,
                created_ms=scored.time_ms,
                shard_id="shardId-000000000000",
                sequence_number=str(i),
            )
            out.append((anomaly_of(finding), event_uid_of(scored.event)))
    return out, len(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--labels", type=Path, help="uid,is_malicious,attack_type CSV")
    parser.add_argument(
        "--key",
        type=parse_key,
        action="append",
        default=[],
        metavar="CLASS=FIELDS",
        help="the entity fields of a class, for every policy (as OCSF_DETECT_GROUP_KEYS)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    items, n_events = anomalies(args.bundle, args.events)
    kinds: dict[str, str] = {}
    if args.labels:
        with args.labels.open(newline="") as f:
            kinds = {row["uid"]: row["attack_type"] for row in csv.DictReader(f)}
    kind_of = {a.finding_uid: kinds.get(uid or "", "?") for a, uid in items}
    attack_types = sorted(set(kind_of.values()) - {"benign", "?"})
    keys = dict(args.key)
    rows = []
    for name, settings in POLICIES.items():
        policy = replace(GroupingPolicy(**settings), keys=keys)
        outcome = simulate([a for a, _ in items], policy)
        spoke = Counter(kind_of[uid] for uid in outcome.opened_by.values())
        # the kinds of anomalies counted into a group that spoke
        notified = {kind_of[u] for u, g in outcome.group_of.items() if g in outcome.opened_by}
        # attack anomalies whose group never spoke (their type may still have been notified)
        unheard = [
            u
            for u, g in outcome.group_of.items()
            if g not in outcome.opened_by and kind_of[u] not in ("benign", "?")
        ]
        rows.append(
            {
                "policy": name,
                "settings": settings,
                "anomalies": outcome.anomalies,
                "groups": outcome.groups,
                "quiet_groups": outcome.quiet_groups,
                "notifications": outcome.notifications,
                "openings": outcome.opened,
                "updates": outcome.updates,
                "closing_updates": outcome.closing,
                "notifications_per_anomaly": round(
                    outcome.notifications / max(outcome.anomalies, 1), 3
                ),
                "openings_about_benign": spoke.get("benign", 0) if kinds else None,
                "attack_anomalies_in_quiet_groups": len(unheard) if kinds else None,
                "attack_types_never_notified": (
                    [t for t in attack_types if t not in notified] if kinds else None
                ),
            }
        )
    if args.json:
        print(json.dumps({"events": n_events, "keys": keys, "policies": rows}, indent=2))
        return 0
    print(f"{n_events:,} events, {len(items):,} anomalies; entity keys: {keys or 'defaults'}")
    header = f"{'policy':<52} {'groups':>6} {'quiet':>5} {'notif.':>6} {'/anom.':>6}"
    header += f" {'open':>5} {'upd.':>5} {'close':>5}"
    if kinds:
        header += f" {'benign':>6} {'unheard':>7}  attack types never notified"
    print(header)
    for r in rows:
        line = (
            f"{r['policy']:<52} {r['groups']:>6} {r['quiet_groups']:>5} {r['notifications']:>6}"
            f" {r['notifications_per_anomaly']:>6.1%} {r['openings']:>5} {r['updates']:>5}"
            f" {r['closing_updates']:>5}"
        )
        if kinds:
            never = ", ".join(r["attack_types_never_notified"]) or "-"
            line += f" {r['openings_about_benign']:>6} {r['attack_anomalies_in_quiet_groups']:>7}"
            line += f"  {never}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
