"""A cold container's feedback overlay: how many scoring calls, and how long, until every
judged-benign vector is in, reading one object at a time against the scoring functions'
``OVERLAY_READ_CONCURRENCY``. Prints a table, or JSON; never fails on a stopwatch.

    python benchmarks/overlay_cold.py [--vectors 2000] [--dim 32] [--numeric 96] [--fields 17]
                                      [--latency-ms 0,20] [--json]

Each object holds a vector and, as a class whose fine view measures the feature space
(bundle format 15, the default) has them, a row of ``--numeric`` numbers and ``--fields``
codes (UNSW-NB15's widths; ``--numeric 0 --fields 0``: the vector alone, as formats 13 and
14 keep it).

The overlay lives in an S3 bucket of moto's server on 127.0.0.1, in a process of its own
(in this one it would share the interpreter lock with the reads it serves), written as
``S3FeedbackStore.record`` lays it out, and is read by ``OverlaySource`` through a
boto3 client as the stream function builds it, with the default refresh budget (1 s a
call, listing included). Each call to ``current()`` stands for one scoring request of a
freshly started container. The emulator answers on loopback in about a millisecond; S3
answers a small GET in tens of milliseconds. ``--latency-ms`` adds that wait to every
read (a botocore ``before-send`` hook that sleeps before the request goes out; 0: the
emulator as it is), so the rows with latency model S3's round trip rather than measure it.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson

from ocsf_detect.feedback import (
    OVERLAY_READ_CONCURRENCY,
    OverlaySource,
    RowShape,
    S3FeedbackStore,
    overlay_key,
)
from ocsf_detect_tools.emulator import aws_environment

BUNDLE_VERSION = "1.0.0+bench"
CLASS_UID = 4001
MAX_CALLS = 10_000  # a bound on the loop, far above any row's count


@contextmanager
def moto_process() -> Iterator[str]:
    """moto's server in a child process on a free loopback port; its endpoint URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):  # up to 30 s to start
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("moto's server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


CARDINALITY = 5  # of every field's codes in the rows written


def fill(client: Any, bucket: str, vectors: int, dim: int, shape: RowShape | None) -> None:
    rng = np.random.default_rng(0)
    for i in range(vectors):
        body: dict[str, Any] = {"finding_uid": f"f{i}", "vector": rng.normal(size=dim).tolist()}
        if shape is not None:
            body["row"] = {
                "numeric": rng.normal(size=shape[0]).tolist(),
                "codes": rng.integers(0, CARDINALITY, len(shape[1])).tolist(),
            }
        client.put_object(
            Bucket=bucket,
            Key=overlay_key(BUNDLE_VERSION, CLASS_UID, f"event-{i:06d}"),
            Body=orjson.dumps(body),
        )


def cold_load(
    bucket: str, dim: int, shape: RowShape | None, concurrency: int, latency_s: float
) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(
        "s3", config=Config(read_timeout=5, retries={"mode": "standard", "total_max_attempts": 2})
    )
    if latency_s > 0:

        def wait(request: Any, **_: Any) -> None:
            if request.method == "GET" and "list-type" not in request.url:
                time.sleep(latency_s)  # a GetObject's round trip; listings go as they are

        client.meta.events.register("before-send", wait)
    source = OverlaySource(
        S3FeedbackStore(client, bucket),
        BUNDLE_VERSION,
        {CLASS_UID: dim},
        read_concurrency=concurrency,
        row_shapes={} if shape is None else {CLASS_UID: shape},
    )
    counts: list[int] = []
    start = time.perf_counter()
    while len(counts) < MAX_CALLS:
        counts.append(source.current().count(CLASS_UID))
        if source.last_error is not None:
            raise RuntimeError(source.last_error)
        if source.caught_up:
            break
    seconds = time.perf_counter() - start
    return {
        "read_concurrency": concurrency,
        "latency_ms": round(latency_s * 1000),
        "calls": len(counts),
        "vectors": counts[-1],
        "first_call_vectors": counts[0],
        "seconds": round(seconds, 2),
        "vectors_per_s": round(counts[-1] / seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--vectors", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--numeric", type=int, default=96, help="numeric columns of each row")
    ap.add_argument("--fields", type=int, default=17, help="categorical fields of each row")
    ap.add_argument("--latency-ms", default="0,20", help="comma-separated, per GetObject")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    latencies = [float(x) / 1000 for x in args.latency_ms.split(",") if x.strip()]
    shape: RowShape | None = None
    if args.numeric or args.fields:
        shape = (args.numeric, (CARDINALITY,) * args.fields)
    rows = []
    with moto_process() as endpoint, aws_environment(endpoint):
        import boto3

        s3 = boto3.client("s3")
        bucket = "overlay-bench"
        s3.create_bucket(Bucket=bucket)
        fill(s3, bucket, args.vectors, args.dim, shape)
        for latency in latencies:
            for concurrency in (1, OVERLAY_READ_CONCURRENCY):
                rows.append(cold_load(bucket, args.dim, shape, concurrency, latency))
    if args.json:
        widths = {"numeric": args.numeric, "fields": args.fields}
        print(
            json.dumps({"vectors": args.vectors, "dim": args.dim, **widths, "rows": rows}, indent=2)
        )
        return
    print(
        f"A cold overlay of {args.vectors:,} vectors (dim {args.dim}; rows of {args.numeric} "
        f"numerics and {args.fields} codes), budget 1 s a call\n"
    )
    print(
        "| GET latency | reads at once | calls until complete "
        "| vectors after the first call | seconds | vectors/s |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['latency_ms']} ms | {r['read_concurrency']} | {r['calls']} | "
            f"{r['first_call_vectors']:,} | {r['seconds']} | {r['vectors_per_s']:,} |"
        )


if __name__ == "__main__":
    main()
