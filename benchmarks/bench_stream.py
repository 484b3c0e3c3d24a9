"""Stream handler throughput on a 10,000-record Kinesis event, publishing to the emulator.

Usage: python benchmarks/bench_stream.py --bundle DIR [--events FILE] [--records N]
Prints one JSON object. A benchmark, not a test: it never fails on a stopwatch.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path
from typing import Any


def bench(bundle_dir: Path, lines: list[bytes], records: int = 10_000) -> dict[str, Any]:
    from ocsf_detect_tools.emulator import Emulator, aws_environment, environment
    from ocsf_detect_tools.replay import create_resources
    from ocsf_detect_tools.runner import LocalContext

    lines = (lines * (records // len(lines) + 1))[:records]
    event = {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": str(i),
                    "sequenceNumber": str(10**20 + i),
                    "data": base64.b64encode(line).decode(),
                    "approximateArrivalTimestamp": time.time(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:{10**20 + i}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/bench",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/bench",
            }
            for i, line in enumerate(lines)
        ]
    }
    with Emulator() as emu, aws_environment(emu.endpoint_url):
        resources = create_resources()
        with environment(resources.handler_environment(bundle_dir)):
            t0 = time.perf_counter()
            from stream_scoring import adapters, handler

            adapters.reset()
            adapters.get_detector()
            adapters.get_adapters()
            cold_ms = (time.perf_counter() - t0) * 1000
            publish_s = 0.0
            for publisher in adapters.get_adapters().publishers:
                original = publisher.publish

                def timed(alerts, _original=original):
                    nonlocal publish_s
                    start = time.perf_counter()
                    try:
                        return _original(alerts)
                    finally:
                        publish_s += time.perf_counter() - start

                publisher.publish = timed  # type: ignore[method-assign]
            quarantine = adapters.get_adapters().quarantine
            q_original = quarantine.put

            def q_timed(items):
                nonlocal publish_s
                start = time.perf_counter()
                try:
                    return q_original(items)
                finally:
                    publish_s += time.perf_counter() - start

            quarantine.put = q_timed  # type: ignore[method-assign]
            seen = []
            remove = handler.add_result_observer(seen.append)
            start = time.perf_counter()
            response = handler.lambda_handler(event, LocalContext())
            total = time.perf_counter() - start
            remove()
            adapters.reset()
    counts = seen[0].counts()
    return {
        "records": records,
        "failed": len(response["batchItemFailures"]),
        "anomalies": counts["anomalies"],
        "rejected": counts["rejected"],
        "seconds": round(total, 3),
        "records_per_s": round(records / total, 1),
        "publish_share": round(publish_s / total, 3),
        "records_per_s_excluding_emulator": round(records / max(total - publish_s, 1e-9), 1),
        "cold_start_ms": round(cold_ms, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--events", type=Path)
    parser.add_argument("--records", type=int, default=10_000)
    args = parser.parse_args()
    if args.events:
        from ocsf_detect_tools.eventio import read_lines

        lines = read_lines(args.events)
    else:
        import orjson

        from ocsf_detect_tools.simulate.traffic import generate_traffic

        lines = [orjson.dumps(e) for e in generate_traffic(2000, seed=12, attacks=True).events]
    print(json.dumps(bench(args.bundle, lines, args.records)))


if __name__ == "__main__":
    main()
