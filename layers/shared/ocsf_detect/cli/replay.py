"""``ocsf-detect replay``: events -> Kinesis -> stream function -> SNS/EventBridge/quarantine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ocsf_detect.cli import CommandError
from ocsf_detect.cli.progress import Progress


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay events through Kinesis and the stream function",
        description="Replay OCSF events (JSONL) through an emulated Kinesis stream and the "
        "stream-scoring function; counts what was scored, alerted and quarantined.",
    )
    parser.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    parser.add_argument("--events", type=Path, required=True, help="events file (JSONL, .gz ok)")
    parser.add_argument("--batch-size", type=int, default=100, help="records per invocation")
    parser.add_argument("--json", action="store_true", help="print one JSON summary object")
    parser.add_argument(
        "--endpoint", help="AWS endpoint URL to use instead of the embedded emulator"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ocsf_detect.eventio import read_lines
    from ocsf_detect.replay import dumps, replay

    if not (args.bundle / "manifest.json").is_file():
        raise CommandError(f"{args.bundle} is not a bundle (no manifest.json); see 'train'")
    if not args.events.is_file():
        raise CommandError(f"{args.events} does not exist; 'generate' can write some events")
    if not 1 <= args.batch_size <= 10_000:
        raise CommandError("--batch-size must be between 1 and 10000 (Kinesis' limit)")
    lines = read_lines(args.events)
    if not lines:
        raise CommandError(f"{args.events} holds no events")
    summary = replay(
        args.bundle,
        lines,
        batch_size=args.batch_size,
        endpoint_url=args.endpoint,
        progress=Progress,
    )
    if args.json:
        print(dumps(summary))
        return 0
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}", file=sys.stdout)
    return 0
