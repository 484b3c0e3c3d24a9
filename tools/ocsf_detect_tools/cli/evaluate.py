"""ocsf-detect evaluate --bundle DIR --events FILE --labels CSV [--feedback-labels SOURCE]
[--json] [--plots DIR]"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ocsf_detect_tools.cli import CommandError, add_max_rejected, rejected_status
from ocsf_detect_tools.cli.score import load_detector, read_events

DESCRIPTION = """\
Score labeled events with a bundle and measure detection quality (ROC-AUC, average
precision, precision at k, recall and precision at the calibrated threshold) next to
two references fitted on the same features: IsolationForest and exact k-NN."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "evaluate", help="detection quality vs labels", description=DESCRIPTION
    )
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--events", required=True, type=Path, help=".jsonl, .jsonl.gz or - (stdin)")
    p.add_argument(
        "--labels",
        type=Path,
        help="CSV or CSV.gz with uid (the events' metadata.uid) and is_malicious (1/0); "
        "required unless --feedback-labels is given",
    )
    p.add_argument(
        "--feedback-labels",
        metavar="SOURCE",
        help="analysts' verdicts as labels (s3://FEEDBACK_BUCKET, a directory of verdict "
        ".json files or a .jsonl file): malicious 1, benign 0, by the event's metadata.uid, "
        "over --labels; a judged event missing from --events is evaluated too",
    )
    p.add_argument(
        "--baseline",
        nargs="+",
        type=Path,
        help="fit the references on these (normally the bundle's training events); "
        "without it they are fitted on the evaluated events themselves",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--plots", type=Path, help="directory to write roc.png, pr.png and scores.png in"
    )
    add_max_rejected(p)
    p.set_defaults(func=run)


def _with_verdicts(source: str, lines: list[bytes], labels: dict[str, int]) -> list[bytes]:
    """Add the verdicts' labels to ``labels`` (a verdict wins over the CSV) and return the
    lines with the judged events that ``lines`` lacks appended."""
    import orjson

    from ocsf_detect_tools.verdicts import VerdictSourceError, read_verdicts, verdict_labels

    try:
        verdicts = read_verdicts(source)
    except VerdictSourceError as exc:
        raise CommandError(f"--feedback-labels {exc}") from exc
    judged = verdict_labels(verdicts)
    if not judged:
        raise CommandError(
            f"--feedback-labels {source}: no verdict names an event with a metadata.uid"
        )
    labels.update(judged)
    present: set[str] = set()
    for line in lines:
        try:
            metadata = orjson.loads(line).get("metadata")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(metadata, dict) and metadata.get("uid") is not None:
            present.add(str(metadata["uid"]))
    extra = [
        orjson.dumps(v.event)
        for v in verdicts
        if str((v.event.get("metadata") or {}).get("uid")) in judged.keys() - present
    ]
    return [*lines, *extra]


def run(args: argparse.Namespace) -> int:
    from ocsf_detect_tools.evaluation import (
        EvaluationError,
        NothingScoredError,
        evaluate,
        read_labels,
        write_plots,
    )

    if args.plots and args.plots.exists() and not args.plots.is_dir():
        raise CommandError(f"--plots {args.plots} is a file; give a directory for the plots")
    if args.labels is None and not args.feedback_labels:
        raise CommandError("give --labels CSV, --feedback-labels SOURCE, or both")
    detector = load_detector(args.bundle)
    try:
        labels = read_labels(args.labels) if args.labels is not None else {}
    except EvaluationError as exc:
        raise CommandError(str(exc)) from exc
    lines = read_events(args.events)
    if args.feedback_labels:
        lines = _with_verdicts(args.feedback_labels, lines, labels)
    baseline = [line for p in args.baseline for line in read_events(p)] if args.baseline else None
    if args.baseline and not baseline:
        raise CommandError(
            f"--baseline {' '.join(map(str, args.baseline))} holds no events; give the "
            "bundle's training events, or leave --baseline out"
        )
    try:
        ev = evaluate(detector, lines, labels, baseline)
    except NothingScoredError as exc:
        if exc.rejected == exc.total:  # the run could not finish: its input was all rejected
            return rejected_status(exc.rejected, exc.total, args.max_rejected, str(args.events))
        raise CommandError(str(exc)) from exc
    except EvaluationError as exc:
        raise CommandError(str(exc)) from exc
    if args.plots:
        write_plots(ev, args.plots)
    status = rejected_status(ev.n_rejected, ev.n_events, args.max_rejected, str(args.events))
    if args.json:
        print(json.dumps(ev.as_dict(), indent=2))
        return status
    print(
        f"{ev.n_events:,} events, {ev.n_scored:,} scored, {ev.n_labeled:,} labeled "
        f"({ev.n_malicious:,} malicious); references fitted on {ev.reference_fit}"
    )
    rows = [("ocsf-detect", ev.ours), *ev.baselines.items()]
    print(
        f"{'detector':18s} {'ROC-AUC':>8s} {'AP':>8s} {'P@k':>8s} {'recall@thr':>11s} "
        f"{'prec@thr':>9s} {'alerts':>7s}"
    )
    for name, m in rows:
        print(
            f"{name:18s} {m.roc_auc:8.4f} {m.average_precision:8.4f} {m.precision_at_k:8.4f} "
            f"{m.threshold_recall:11.4f} {m.threshold_precision:9.4f} {m.alerts:7d}"
        )
    if args.plots:
        print(f"plots written to {args.plots}")
    return status
