"""ocsf-detect report --bundle DIR --events FILE [--labels CSV] [--out report.html]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ocsf_detect_tools.cli import CommandError, add_max_rejected, rejected_status

DESCRIPTION = """\
Score events with a bundle and write one self-contained HTML page (the demo's report)
for any data: a summary, the top alerts per class and entity, the score distribution
relative to the threshold, alerts over time and, with --labels, precision, recall and
recall per label (the labels file's attack_type or label column). The top alerts are
printed too."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "report", help="score events and write an HTML report", description=DESCRIPTION
    )
    p.add_argument("--bundle", required=True, type=Path, help="bundle directory")
    p.add_argument("--events", required=True, type=Path, help=".jsonl, .jsonl.gz or - (stdin)")
    p.add_argument(
        "--labels",
        type=Path,
        help="CSV or CSV.gz with uid, is_malicious (1/0) and optionally attack_type",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("report.html"),
        help="the page to write (default: %(default)s), under a temporary name renamed "
        "when complete",
    )
    p.add_argument("--title", default="ocsf-detect report", help="the page's title")
    add_max_rejected(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ocsf_detect_tools.cli.score import load_detector, read_events
    from ocsf_detect_tools.evaluation import EvaluationError
    from ocsf_detect_tools.report import (
        analyse,
        format_table,
        read_label_rows,
        top_alerts,
        write_report,
    )

    if args.out.is_dir():
        raise CommandError(f"--out {args.out} is a directory; give the .html file to write")
    detector = load_detector(args.bundle)
    try:
        labels = read_label_rows(args.labels) if args.labels else None
    except EvaluationError as exc:
        raise CommandError(str(exc)) from exc
    lines = read_events(args.events)
    scored, summary, per_label = analyse(detector, lines, labels)
    summary["bundle_version"] = detector.bundle_version
    table = top_alerts(scored, labels)
    write_report(args.out, scored, summary, per_label, table, labels, title=args.title)
    print("Top alerts (score relative to the threshold; one row per class and entity)")
    print(format_table(table))
    print("\nSummary")
    for key, value in summary.items():
        print(f"  {key:22s} {value}")
    if per_label:
        print("\nRecall per label at the calibrated threshold")
        for kind, (found, total) in per_label.items():
            print(f"  {kind:22s} {found}/{total} = {found / total:.2f}")
    print(f"\nReport: {args.out}", file=sys.stderr)
    source = str(args.events) if str(args.events) != "-" else "stdin"
    return rejected_status(summary.get("rejected", 0), len(lines), args.max_rejected, source)
