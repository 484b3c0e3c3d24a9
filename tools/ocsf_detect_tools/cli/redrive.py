"""``ocsf-detect redrive``: the on-failure queue's pointers -> the stream -> the function."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ocsf_detect_tools.cli import CommandError

HELP = "redrive the batches the on-failure queue points to through the stream function"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "redrive",
        help=HELP,
        description="Read the pointers on the stream function's on-failure queue, re-read "
        "those records from the stream while its retention holds, and put them through the "
        "function again (as the event source mapping does: partial failures retried, a "
        "batch that still fails pointed to afresh). Pointers that cannot be recovered stay "
        "on the queue and are reported with the reason.",
    )
    parser.add_argument("--queue-url", required=True, help="the on-failure queue")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--function", help="the stream function to invoke (name, ARN or name:alias)"
    )
    target.add_argument(
        "--bundle",
        type=Path,
        help="run the stream function in this process with this bundle; its other settings "
        "come from the OCSF_DETECT_* environment variables, as in Lambda",
    )
    parser.add_argument("--endpoint", help="AWS endpoint URL (an emulator), instead of AWS")
    parser.add_argument("--max", type=int, default=None, help="redrive at most N pointers")
    parser.add_argument("--json", action="store_true", help="print one JSON report object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import boto3
    import orjson
    from botocore.exceptions import BotoCoreError, ClientError

    from ocsf_detect_tools.redrive import redrive, summary_lines

    if args.max is not None and args.max < 1:
        raise CommandError("--max must be at least 1")
    session = boto3.session.Session()

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=args.endpoint)

    if args.bundle and args.endpoint:  # the function's own clients go there too
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint
    invoke = _local_invoke(args.bundle) if args.bundle else _lambda_invoke(client, args.function)
    try:
        report = redrive(
            args.queue_url,
            invoke,
            kinesis=client("kinesis"),
            sqs=client("sqs"),
            max_pointers=args.max,
        )
    except (ClientError, BotoCoreError) as exc:
        raise CommandError(f"cannot read the on-failure queue {args.queue_url}: {exc}") from exc
    if args.json:
        print(orjson.dumps(report.as_dict()).decode())
    else:
        for line in summary_lines(report):
            print(line)
    if report.unrecovered or report.records_failed_again:
        print(
            f"ocsf-detect: {len(report.unrecovered)} pointer(s) not recovered, "
            f"{report.records_failed_again} record(s) failed again",
            file=sys.stderr,
        )
        return 1
    return 0


def _lambda_invoke(client: Any, function: str) -> Any:
    import orjson

    lambda_client = client("lambda")

    def invoke(event: dict[str, Any], _context: Any) -> Any:
        out = lambda_client.invoke(FunctionName=function, Payload=orjson.dumps(event))
        payload = orjson.loads(out["Payload"].read() or b"null")
        if out.get("FunctionError"):  # a crash: the runner retries, bisects, points again
            raise RuntimeError(f"{out['FunctionError']}: {payload}")
        return payload

    return invoke


def _local_invoke(bundle: Path) -> Any:
    from ocsf_detect import names
    from ocsf_detect_tools.cli.score import load_detector

    load_detector(bundle)  # a bundle the function cannot load: say why, before redriving
    os.environ[names.ENV_BUNDLE_PATH] = str(bundle)
    from stream_scoring import adapters, handler

    adapters.reset()
    return handler.lambda_handler
