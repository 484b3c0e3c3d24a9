"""Prediction API latency and throughput. Prints JSON; never fails on a stopwatch.

    python benchmarks/bench_api.py --bundle DIR [--requests 2000] [--threads 4]

Measures: the handler in-process (warm) for one event and a 1,000-event batch; the local
server over loopback under a bounded concurrent load; a cold start (imports + bundle load)
in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ocsf_detect import names

COLD_START = """
import time, json, sys
t0 = time.perf_counter()
from prediction_api import handler, service
t1 = time.perf_counter()
d = service.get_detector(handler.settings)
t2 = time.perf_counter()
print(json.dumps({"import_ms": (t1-t0)*1e3, "load_ms": (t2-t1)*1e3, "total_ms": (t2-t0)*1e3}))
"""


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(samples_ms),
        "p50_ms": pct(samples_ms, 0.50),
        "p99_ms": pct(samples_ms, 0.99),
        "mean_ms": round(statistics.fmean(samples_ms), 3),
    }


def proxy(method: str, path: str, body: str | None) -> dict[str, Any]:
    from ocsf_detect_tools.localapi import proxy_event

    headers = [("Content-Type", "application/json")] if body is not None else []
    return proxy_event(method, path, headers, body.encode() if body else None)


def in_process(events: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    from prediction_api import handler

    from ocsf_detect_tools.localapi import LocalContext

    ctx = LocalContext("bench")
    single = [proxy("POST", "/v1/predict", json.dumps(e)) for e in events[:200]]
    for ev in single[:50]:  # warm-up
        handler.lambda_handler(ev, ctx)
    times = []
    for i in range(repeats):
        ev = single[i % len(single)]
        t0 = time.perf_counter()
        response = handler.lambda_handler(ev, ctx)
        times.append((time.perf_counter() - t0) * 1e3)
        assert response["statusCode"] in (200, 422), response
    batch_event = proxy("POST", "/v1/predict/batch", json.dumps({"events": events[:1000]}))
    handler.lambda_handler(batch_event, ctx)
    batch_times = []
    for _ in range(20):
        t0 = time.perf_counter()
        response = handler.lambda_handler(batch_event, ctx)
        batch_times.append((time.perf_counter() - t0) * 1e3)
        assert response["statusCode"] == 200
    return {"single_event": summary(times), "batch_1000": summary(batch_times)}


def over_http(events: list[dict[str, Any]], threads: int, per_thread: int) -> dict[str, Any]:
    from prediction_api import handler

    from ocsf_detect_tools.localapi import make_server

    server = make_server(handler.lambda_handler, "127.0.0.1", 0)
    server.quiet = True  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    bodies = [json.dumps(e).encode() for e in events[:200]]
    latencies: list[float] = []
    lock = threading.Lock()

    def client(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for i in range(per_thread):
            body = bodies[(offset + i) % len(bodies)]
            t0 = time.perf_counter()
            conn.request("POST", "/v1/predict", body, {"Content-Type": "application/json"})
            conn.getresponse().read()
            mine.append((time.perf_counter() - t0) * 1e3)
        conn.close()
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=client, args=(i * 37,)) for i in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    server.shutdown()
    server.server_close()
    return {
        "threads": threads,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        **summary(latencies),
    }


def cold_start(bundle: Path) -> dict[str, Any]:
    env = {**os.environ, names.ENV_BUNDLE_PATH: str(bundle)}
    out = subprocess.run(
        [sys.executable, "-c", COLD_START], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return {k: round(v, 1) for k, v in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--requests", type=int, default=2000, help="in-process single events")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--per-thread", type=int, default=250)
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()

    # What a Lambda would do minus the EMF/X-Ray output, which goes nowhere here.
    os.environ[names.ENV_BUNDLE_PATH] = str(args.bundle.resolve())
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    from ocsf_detect_tools.simulate.traffic import generate_traffic

    cold = cold_start(args.bundle.resolve())
    events = generate_traffic(max(args.events, 1000), seed=99, attacks=True).events
    # Whatever the function prints (EMF lines if metrics stay on) goes to stderr, so
    # stdout is exactly one JSON object.
    with contextlib.redirect_stdout(sys.stderr):
        report = {
            "bundle": args.bundle.name,
            "cold_start": cold,
            "in_process": in_process(events, args.requests),
            "local_server": over_http(events, args.threads, args.per_thread),
            "targets": {"single_p99_ms": 5, "batch_1000_ms": 100},
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
