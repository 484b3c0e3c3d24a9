"""ocsf-detect bench [--json]"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

HEADLINE_KEYS = (
    "events_per_s",
    "per_record_events_per_s",
    "speedup",
    "stage_ms",
    "bundle_load_ms",
)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive count")
    return value


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help="throughput benchmarks",
        description="Measure parsing + features and batched scoring throughput (events/s), "
        "against per-record scoring, on the shared data's captures when present, else on "
        "generated traffic. Prints numbers; never fails on a stopwatch.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("OCSF_DETECT_DATA", "../shared/data")),
        help="folder of the shared data (iot23 events), default ../shared/data",
    )
    p.add_argument("--events", type=positive, default=10_000, help="events per measurement")
    p.add_argument("--index-size", type=positive, default=50_000)
    p.add_argument("--cache", type=Path, default=Path(".bench"), help="benchmark bundle cache")
    p.add_argument(
        "--train-sizes",
        type=positive,
        nargs="*",
        default=[10_000, 50_000, 200_000],
        metavar="N",
        help="also time train (default configuration) on this many generated events each "
        "(default: %(default)s; `--train-sizes` with no N: training is not timed)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ocsf_detect_tools.benchmark import (
        bench_bundle,
        bench_parse_features,
        bench_scoring,
        bench_training,
        network_events,
        normal_traffic,
    )
    from ocsf_detect_tools.benchmark_decode import bench_decode_ratios

    os.environ.setdefault("OMP_NUM_THREADS", "1")

    def log(m: str) -> None:
        print(m, file=sys.stderr)

    data = args.data if args.data.is_dir() else None
    lines, source = network_events(data, max(args.events, 20_000))
    result: dict[str, Any] = {"source": source}
    log(f"parse + features on {len(lines):,} events from {source}")
    result["parse_features"] = bench_parse_features(lines)
    bundle = bench_bundle(args.cache, args.index_size, log)
    log(f"scoring {args.events:,} events against {bundle}")
    # The captures are real traffic the bundle (trained on generated traffic) has never
    # seen: nearly every event alerts, the worst case for the exact re-check of alerts.
    result["scoring"] = bench_scoring(bundle, lines[: args.events])
    log(f"scoring {args.events:,} generated normal events against {bundle}")
    result["scoring_normal_traffic"] = bench_scoring(bundle, normal_traffic(args.events))
    log(f"decode and end-to-end scoring of {args.events:,} events against orjson.loads")
    result["decode"] = bench_decode_ratios(bundle, lines[: args.events])
    result["decode_vs_orjson"] = result["decode"]["decode_vs_orjson"]
    result["e2e_vs_orjson"] = result["decode"]["e2e_vs_orjson"]
    # The headline numbers at the top level as well: the captures' scoring run.
    result.update({key: result["scoring"][key] for key in HEADLINE_KEYS})
    if args.train_sizes:
        result["training"] = bench_training(args.train_sizes, log)
        result["train_events_per_s"] = {
            str(t["events"]): t["train_events_per_s"] for t in result["training"]
        }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        pf, sc = result["parse_features"], result["scoring"]
        print(
            f"parse+features: {pf['events_per_s']:,} ev/s (json+pydantic reference "
            f"{pf['reference_json_pydantic_events_per_s']:,} ev/s, x{pf['speedup']})"
        )
        print(
            f"scoring: {sc['events_per_s']:,} ev/s batched vs {sc['per_record_events_per_s']:,}"
            f" per record (x{sc['speedup']}), index {sc['index_vectors']:,} vectors, "
            f"bundle load {sc['bundle_load_ms']} ms; stage ms {sc['stage_ms']}; "
            f"{sc['anomalies']:,} of {sc['events']:,} anomalous"
        )
        dc = result["decode"]
        print(
            f"decode + validation: {dc['decode_vs_orjson']}x orjson.loads "
            f"({dc['decode_us_per_event']} vs {dc['orjson_us_per_event']} us/event); "
            f"end to end: {dc['e2e_vs_orjson']}x ({dc['e2e_us_per_event']} us/event)"
        )
        nt = result["scoring_normal_traffic"]
        print(
            f"scoring normal traffic: {nt['events_per_s']:,} ev/s batched vs "
            f"{nt['per_record_events_per_s']:,} per record (x{nt['speedup']}); "
            f"{nt['anomalies']:,} of {nt['events']:,} anomalous"
        )
        for t in result.get("training", []):
            print(
                f"train: {t['events']:,} events in {t['seconds']} s = "
                f"{t['train_events_per_s']:,} events/s; steps per class {t['steps_per_class']}"
                + (" (stopped by [train] max_minutes)" if t["stopped_early"] else "")
            )
    return 0
