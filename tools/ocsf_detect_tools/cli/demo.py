"""ocsf-detect demo [--events FILE [--labels CSV]] [--out DIR] [--config FILE]

Generates a baseline and a live set (unless --events is given), trains a bundle on the
baseline, replays the live set through the emulated Kinesis into the real stream
function (anomalies grouped in the alert-state table; the groups' notifications delivered to
SNS and EventBridge subscriber queues), then prints the top alerts, the raw anomalies next
to the alert groups, a summary against the labels, and writes an HTML report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ocsf_detect_tools.cli import CommandError
from ocsf_detect_tools.cli.progress import Progress


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="run the whole pipeline locally",
        description="Generate a baseline and a live set with labeled attacks (or take "
        "--events), train a bundle, replay the live set through an embedded AWS emulator "
        "into the real stream function, and report the top alerts, quality against the "
        "labels and speed, with an HTML report.",
    )
    p.add_argument("--events", type=Path, help="your own events (.jsonl/.jsonl.gz)")
    p.add_argument("--labels", type=Path, help="labels CSV for --events (uid, is_malicious)")
    p.add_argument(
        "--baseline",
        type=Path,
        help="baseline to train on (default: generated, or --events itself)",
    )
    p.add_argument("--out", type=Path, default=Path("demo-out"))
    p.add_argument(
        "--config",
        type=Path,
        help="TOML configuration for the bundle it trains, as `ocsf-detect train --config` "
        "(default: the defaults)",
    )
    p.add_argument("--baseline-events", type=int, default=40_000)
    p.add_argument("--live-events", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--json", action="store_true", help="print the summary as JSON at the end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ocsf_detect.detector.scorer import Detector
    from ocsf_detect_tools.build import build_bundle
    from ocsf_detect_tools.config import ConfigError, load_config
    from ocsf_detect_tools.evaluation import EvaluationError
    from ocsf_detect_tools.eventio import read_lines, write_jsonl
    from ocsf_detect_tools.replay import replay
    from ocsf_detect_tools.report import (
        analyse,
        format_table,
        group_rows,
        read_label_rows,
        top_alerts,
        write_report,
    )
    from ocsf_detect_tools.simulate.traffic import generate_traffic, write_labels_csv

    started = time.perf_counter()
    # the arguments are checked before anything is written
    if args.labels and not args.events:
        raise CommandError("--labels needs --events")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.events:
        live_path, labels_path = args.events, args.labels
        base_path = args.baseline or args.events
    else:
        say(
            f"1/4 generating {args.baseline_events:,} baseline and {args.live_events:,} "
            "live events (with injected attacks)"
        )
        # every source the generator knows: network, DNS, authentication, web,
        # endpoint, identity and cloud (eight classes)
        base = generate_traffic(args.baseline_events, seed=1, attacks=False, endpoint=True)
        live = generate_traffic(args.live_events, seed=2, attacks=True, endpoint=True)
        base_path, live_path = out / "baseline.jsonl.gz", out / "live.jsonl.gz"
        labels_path = out / "live.labels.csv"
        write_jsonl(base.events, base_path)
        write_jsonl(live.events, live_path)
        write_labels_csv(live.labels, labels_path)
    try:
        base_lines, live_lines = read_lines(base_path), read_lines(live_path)
        labels = read_label_rows(labels_path) if labels_path else None
    except EvaluationError as exc:
        raise CommandError(str(exc)) from exc
    bundle = out / "bundle"
    say(f"2/4 training a bundle on {len(base_lines):,} baseline events")
    build_bundle(
        base_lines,
        bundle,
        config,
        sources=[str(base_path)],
        log=lambda m: say("    " + m),
    )
    detector = Detector.load(bundle)
    say(
        f"3/4 replaying {len(live_lines):,} events through Kinesis into the stream function "
        "(embedded AWS emulator on 127.0.0.1)"
    )
    function_log = out / "function.log"
    findings: list[dict[str, Any]] = []
    with function_log.open("w", encoding="utf-8") as log_stream:
        delivery = replay(
            bundle,
            live_lines,
            batch_size=args.batch_size,
            progress=lambda label, total: Progress(f"    {label}", total),
            function_output=log_stream,
            findings=findings,
        )
    say(f"    the stream function's logs and metrics: {function_log}")
    say("4/4 analysing alerts against the labels")
    scored, summary, per_attack = analyse(detector, live_lines, labels)
    table = top_alerts(scored, labels)
    grouping = {
        "raw anomalies": summary["anomalies"],
        "alert groups": delivery["alert_groups"],
        "quiet groups (not published)": delivery["quiet_groups"],
        "anomalies in groups": delivery["grouped_anomalies"],
        "suppressed": delivery["suppressed"],
        "notifications SNS": delivery["notifications_sns"],
        "notifications EventBridge": delivery["notifications_eventbridge"],
        # events the stream function gave up on (on-failure destination): not published
        **({"failed events (stream)": delivery["failed"]} if delivery["failed"] else {}),
    }
    groups = group_rows(findings, labels)
    summary.update(
        {
            "alert_groups": delivery["alert_groups"],
            "quiet_groups": delivery["quiet_groups"],
            "grouped_anomalies": delivery["grouped_anomalies"],
            "suppressed": delivery["suppressed"],
            "notifications_sns": delivery["notifications_sns"],
            "notifications_eventbridge": delivery["notifications_eventbridge"],
            "alerts_sns": delivery["alerts_sns"],
            "alerts_eventbridge": delivery["alerts_eventbridge"],
            "quarantined": delivery["quarantined"],
            "stream_events_per_s": delivery["events_per_s"],
            "bundle_version": detector.bundle_version,
            "total_seconds": round(time.perf_counter() - started, 1),
        }
    )
    report = write_report(
        out / "report.html",
        scored,
        summary,
        per_attack,
        table,
        labels,
        groups=groups,
        grouping=grouping,
    )
    print("\nTop alerts (score relative to the threshold; one row per class and entity)")
    print(format_table(table))
    print("\nRaw anomalies and alert groups (what the stream published)")
    for k, v in grouping.items():
        print(f"  {k:30s} {v}")
    print("\nTop alert groups (as a subscriber received them; score = highest in the group)")
    print(format_table(groups))
    print("\nSummary")
    for k, v in summary.items():
        print(f"  {k:22s} {v}")
    if per_attack:
        print("\nRecall per attack type at the calibrated threshold")
        for kind, (found, total) in per_attack.items():
            print(f"  {kind:22s} {found}/{total} = {found / total:.2f}")
    print(f"\nReport: {report.resolve()}")
    if args.json:
        print(json.dumps({**summary, "per_attack": per_attack}))
    return 0
