"""ocsf-detect score --bundle DIR --events FILE [--out FILE]"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from ocsf_detect_tools.cli import CommandError
from ocsf_detect_tools.cli.progress import Progress

CHUNK = 5000


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("score", help="score events, JSONL of outcomes")
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--events", required=True, type=Path, help=".jsonl or .jsonl.gz")
    p.add_argument("--out", type=Path, help="write outcomes here (default: stdout)")
    p.set_defaults(func=run)


def load_detector(bundle: Path) -> Any:
    from ocsf_detect.detector.bundle import BundleError
    from ocsf_detect.detector.scorer import Detector

    try:
        return Detector.load(bundle)
    except BundleError as exc:
        raise CommandError(str(exc)) from exc


def read_events(path: Path) -> list[bytes]:
    from ocsf_detect_tools.eventio import read_lines

    return read_lines(path)  # EventFileError: one line, status 2 (cli.main)


def run(args: argparse.Namespace) -> int:
    from ocsf_detect.detector.scorer import outcome_dict
    from ocsf_detect_tools.eventio import event_uid, open_text_or_gz

    detector = load_detector(args.bundle)
    lines = read_events(args.events)
    tally: Counter[str] = Counter()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sink = open_text_or_gz(args.out, "wb") if args.out else sys.stdout.buffer
    try:
        with Progress("scoring", total=len(lines)) as progress:
            for start in range(0, len(lines), CHUNK):
                for offset, outcome in enumerate(
                    detector.score_batch(lines[start : start + CHUNK])
                ):
                    record = {"line": start + offset + 1, **outcome_dict(outcome)}
                    event = getattr(outcome, "event", None)
                    if event is not None:
                        record["uid"] = event_uid(event)
                    tally[record["status"] + ("_anomaly" if record.get("is_anomaly") else "")] += 1
                    sink.write(orjson.dumps(record) + b"\n")
                progress.advance(min(CHUNK, len(lines) - start))
    finally:
        if args.out:
            sink.close()
    summary = ", ".join(f"{k}={v}" for k, v in sorted(tally.items()))
    print(f"{len(lines):,} events: {summary}", file=sys.stderr)
    return 0
