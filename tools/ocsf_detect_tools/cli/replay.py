"""``ocsf-detect replay``: events -> Kinesis -> stream function -> SNS/EventBridge/quarantine."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from ocsf_detect_tools.cli import CommandError, add_max_rejected, rejected_status
from ocsf_detect_tools.cli.progress import Progress
from ocsf_detect_tools.producers import RECORD_FORMATS


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay events through Kinesis and the stream function",
        description="Replay OCSF events (JSONL) through an emulated Kinesis stream and the "
        "stream-scoring function; counts what was scored, alerted and quarantined.",
    )
    parser.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    parser.add_argument(
        "--events", type=Path, required=True, help="events: .jsonl, .jsonl.gz or - (stdin)"
    )
    parser.add_argument("--batch-size", type=int, default=100, help="records per invocation")
    parser.add_argument(
        "--record-format",
        choices=RECORD_FORMATS,
        default="json",
        help="pack events into Kinesis records as these producers do: one per record (json), "
        "newline-delimited (ndjson), gzip-compressed NDJSON (gzip), KPL aggregation (kpl), "
        "CloudWatch Logs subscription envelopes (cloudwatch-logs) (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON summary object")
    parser.add_argument(
        "--endpoint", help="AWS endpoint URL to use instead of the embedded emulator"
    )
    parser.add_argument(
        "--function-log",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ocsf-detect-replay-function.log",
        help="where the stream function's log lines and EMF metrics go (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="write the Detection Findings received from SNS here, one JSON per line "
        "(.gz compresses), under a temporary name renamed when complete",
    )
    parser.add_argument(
        "--feedback",
        metavar="SOURCE",
        help="analysts' verdicts (s3://FEEDBACK_BUCKET, a directory of verdict .json files or "
        "a .jsonl file), loaded into the replay's feedback bucket first: events near one "
        "judged benign stop alerting, as after POST /v1/feedback",
    )
    add_max_rejected(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import EndpointConnectionError

    from ocsf_detect_tools.cli.score import load_detector
    from ocsf_detect_tools.eventio import read_lines, write_jsonl
    from ocsf_detect_tools.replay import dumps, replay

    if not 1 <= args.batch_size <= 10_000:
        raise CommandError("--batch-size must be between 1 and 10000 (Kinesis' limit)")
    # A bundle the function cannot load would fail every batch: say why, before replaying.
    load_detector(args.bundle)
    if args.out is not None and args.out.is_dir():
        raise CommandError(f"--out {args.out} is a directory; give a file for the findings")
    lines = read_lines(args.events)  # an empty or non-JSONL file: EventFileError, status 2
    verdicts = _verdicts(args.feedback) if args.feedback else []
    findings: list[dict[str, Any]] = []
    try:
        with args.function_log.open("w", encoding="utf-8") as function_output:
            summary = replay(
                args.bundle,
                lines,
                batch_size=args.batch_size,
                endpoint_url=args.endpoint,
                progress=Progress,
                function_output=function_output,
                record_format=args.record_format,
                findings=findings,
                verdicts=verdicts,
            )
    except EndpointConnectionError as exc:
        raise CommandError(f"no AWS endpoint answers at {args.endpoint}: {exc}") from exc
    if args.json:
        print(dumps(summary))
    else:
        width = max(len(k) for k in summary)
        for key, value in summary.items():
            print(f"{key:<{width}}  {value}", file=sys.stdout)
    print(f"the stream function's logs and metrics: {args.function_log}", file=sys.stderr)
    if args.out is not None:
        write_jsonl(findings, args.out)
        print(f"{len(findings):,} findings written to {args.out}", file=sys.stderr)
    if summary.get("failed"):
        print(
            f"ocsf-detect: {summary['failed']:,} events failed and went to the on-failure "
            f"queue; see {args.function_log}",
            file=sys.stderr,
        )
        return 1
    rejected = int(summary["rejected"])  # lines rejected before the put included
    return rejected_status(rejected, len(lines), args.max_rejected, str(args.events))


def _verdicts(source: str) -> list[Any]:
    """Read before the replay points boto3 at its emulator: an s3:// source is the
    account's feedback bucket."""
    from ocsf_detect_tools.verdicts import VerdictSourceError, read_verdicts

    try:
        verdicts = read_verdicts(source)
    except VerdictSourceError as exc:
        raise CommandError(f"--feedback {exc}") from exc
    benign = sum(v.verdict == "benign" for v in verdicts)
    print(
        f"--feedback: {benign:,} benign verdicts go into the overlay "
        f"({len(verdicts) - benign:,} malicious ones are kept, and silence nothing)",
        file=sys.stderr,
    )
    return verdicts
