"""ocsf-detect score --bundle DIR --events FILE [--out FILE] [--format jsonl|findings]"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO, Any

import orjson

from ocsf_detect_tools.cli import CommandError, add_max_rejected, rejected_status
from ocsf_detect_tools.cli.progress import Progress

CHUNK = 5000

DESCRIPTION = """\
Score OCSF events (JSON lines: .jsonl, .jsonl.gz, or - for stdin) with a bundle. With
--format jsonl (the default), one record per input line, in input order: line, status
(scored, unsupported or rejected), class_uid, class_name and, for scored events,
score, threshold, is_anomaly, severity, neighbors and uid; see the README for every
field. An event over OCSF_DETECT_MAX_EVENT_BYTES (default and maximum 1 MiB, the cap of
the stream function and the API) is rejected too_large. With --format findings, one
OCSF Detection Finding (class 2004) per anomaly, the same the stream function publishes.
Output goes to --out (written under a temporary name and renamed when complete) or
stdout; counts go to stderr."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "score",
        help="score events, JSONL of outcomes or Detection Findings",
        description=DESCRIPTION,
    )
    p.add_argument("--bundle", required=True, type=Path, help="bundle directory")
    p.add_argument("--events", required=True, type=Path, help=".jsonl, .jsonl.gz or - (stdin)")
    p.add_argument(
        "--out", type=Path, help="write here (.gz compresses; default: stdout), atomically"
    )
    p.add_argument(
        "--format",
        choices=("jsonl", "findings"),
        default="jsonl",
        help="jsonl: one outcome per input line; findings: one Detection Finding per anomaly",
    )
    add_max_rejected(p)
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


def unsupported_reason(detector: Any, class_uid: int) -> dict[str, str]:
    """Why an event of ``class_uid`` was not scored: the bundle has no model for it,
    because its baseline held too few of the class's events (``too_few_baseline_events``,
    from the manifest) or none (``no_model``)."""
    from ocsf_detect.ocsf.classes import class_name

    models = ", ".join(f"{m.class_uid} {m.class_name}" for m in detector.manifest.models.values())
    small = detector.manifest.training.unmodelled.get(str(class_uid))
    if small is not None:
        return {
            "reason": small.reason.value,
            "message": f"this bundle has no model for class {class_uid} "
            f"({class_name(class_uid)}): its baseline held {small.baseline_events} of its "
            f"events, a model needs {small.minimum}; it scores {models}",
        }
    return {
        "reason": "no_model",
        "message": f"this bundle has no model for class {class_uid} "
        f"({class_name(class_uid)}); it scores {models}",
    }


def outcome_record(detector: Any, line: int, outcome: Any) -> dict[str, Any]:
    """The ``score`` record of one input line (documented in the README)."""
    from ocsf_detect.detector.scorer import outcome_dict
    from ocsf_detect_tools.eventio import event_uid

    record = {"line": line, **outcome_dict(outcome)}
    if record["status"] == "unsupported":
        record.update(unsupported_reason(detector, record["class_uid"]))
    event = getattr(outcome, "event", None)
    if event is not None:
        record["uid"] = event_uid(event)
    return record


def finding_body(detector: Any, outcome: Any, line: int, source: str, now_ms: int) -> bytes:
    """The Detection Finding of an anomalous outcome, as the stream function builds it;
    an event without metadata.uid is identified by its file and line."""
    from ocsf_detect.findings import build_finding, event_uid_of, fit_finding

    place = (
        {} if event_uid_of(outcome.event) else {"shard_id": source, "sequence_number": str(line)}
    )
    finding = build_finding(
        outcome,
        bundle_version=detector.bundle_version,
        created_ms=now_ms,
        **place,  # type: ignore[arg-type]
    )
    return fit_finding(finding)[1]


@contextmanager
def output(path: Path | None) -> Iterator[IO[bytes]]:
    """stdout, or ``path`` written under a temporary name and renamed when complete."""
    from ocsf_detect_tools.eventio import atomic_open

    with atomic_open(path, "wb") if path else nullcontext(sys.stdout.buffer) as sink:
        yield sink


def max_event_bytes() -> int:
    """The event size cap the stream function and the API apply (one setting:
    ``OCSF_DETECT_MAX_EVENT_BYTES``, default and maximum 1 MiB)."""
    from ocsf_detect.settings import EventSettings

    return EventSettings().max_event_bytes


def score_lines(detector: Any, lines: list[bytes], cap: int) -> list[Any]:
    """One outcome per line; a line over ``cap`` bytes is rejected ``too_large`` unread,
    as the stream function rejects such a record."""
    from ocsf_detect.ocsf.outcomes import Rejected, RejectReason

    big = {
        i: Rejected(RejectReason.TOO_LARGE, f"event is {len(x):,} bytes; the limit is {cap:,}")
        for i, x in enumerate(lines)
        if len(x) > cap
    }
    if not big:
        return list(detector.score_batch(lines))
    scored = iter(detector.score_batch([x for i, x in enumerate(lines) if i not in big]))
    return [big[i] if i in big else next(scored) for i in range(len(lines))]


def run(args: argparse.Namespace) -> int:
    cap = max_event_bytes()
    detector = load_detector(args.bundle)
    lines = read_events(args.events)
    # the file, however it was spelled, names an event without metadata.uid (with its line)
    source = os.path.abspath(args.events) if str(args.events) != "-" else "stdin"
    tally: Counter[str] = Counter()
    now_ms = int(time.time() * 1000)
    findings = args.format == "findings"
    with output(args.out) as sink, Progress("scoring", total=len(lines)) as progress:
        for start in range(0, len(lines), CHUNK):
            chunk = lines[start : start + CHUNK]
            for offset, outcome in enumerate(score_lines(detector, chunk, cap)):
                line = start + offset + 1
                anomaly = bool(getattr(outcome, "is_anomaly", False))
                tally[outcome.status + ("_anomaly" if anomaly else "")] += 1
                if not findings:
                    record = outcome_record(detector, line, outcome)
                    sink.write(orjson.dumps(record) + b"\n")
                elif anomaly:
                    sink.write(finding_body(detector, outcome, line, source, now_ms) + b"\n")
            progress.advance(min(CHUNK, len(lines) - start))
    summary = ", ".join(f"{k}={v}" for k, v in sorted(tally.items()))
    print(f"{len(lines):,} events: {summary}", file=sys.stderr)
    return rejected_status(tally["rejected"], len(lines), args.max_rejected, source)
