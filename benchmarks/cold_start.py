"""Cold start of each packaged function: init (imports) and the first invocation (bundle
load + the self-test's golden events), median of fresh processes, with and without
precompiled python3.12 bytecode in the layers. Prints a table, or JSON; never fails on a
stopwatch.

    python benchmarks/cold_start.py [--bundle DIR] [--runs 5] [--json]

The functions are what ``cdk synth`` packages for the dev stage (synthesized here, for the
bundle's version), laid out and started as in the artifact tier
(``ocsf_detect_tools.artifact``): code asset as task root, layers merged into /opt, the
bundle archive as the model layer, ``python3.12 -I -S -B`` with Lambda's sys.path and the
runtime's boto3. /opt is read-only in Lambda, so no run writes bytecode (``-B``):
"without" runs (every .pyc removed) compile every module on every start; "with" runs use
the unchecked-hash .pyc files the layers ship (compiled here for layers built without
them). The function code itself ships sources in both. Without ``--bundle`` a small bundle is
trained on generated traffic first (a real one loads longer; pass it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ocsf_detect import names
from ocsf_detect.detector.archive import write_archive
from ocsf_detect_tools.artifact import (
    ColdStart,
    lay_out,
    measure_cold_starts,
    placeholder_refs,
    precompile,
    read_assembly,
    require_python312,
    runtime_sdk,
    synth_stage,
)

FIRST_EVENT = {
    names.STREAM_HANDLER: {names.SELFTEST_PAYLOAD_KEY: True},
    names.API_HANDLER: {names.SELFTEST_PAYLOAD_KEY: True},
    names.PRE_TRAFFIC_HANDLER: None,  # no bundle to load; its invocation calls AWS
}
LABELS = {
    names.STREAM_HANDLER: "stream scoring",
    names.API_HANDLER: "prediction API",
    names.PRE_TRAFFIC_HANDLER: "release hook",
}


def small_bundle(out: Path) -> Path:
    """A bundle of the generated traffic's three classes, trained in about a minute."""
    import orjson

    from ocsf_detect_tools.build import build_bundle
    from ocsf_detect_tools.config import DetectorConfig
    from ocsf_detect_tools.simulate.traffic import generate_traffic

    config = DetectorConfig.model_validate(
        {
            "min_class_events": 30,
            "train": {"epochs": 60, "max_steps": 400, "width": 64, "blocks": 2, "dim": 32},
            "index": {"recall_sample": 200, "ef_construction": 100},
        }
    )
    events = generate_traffic(4000, seed=11, attacks=False).events
    build_bundle([orjson.dumps(e) for e in events], out, config)
    return out


def measure(bundle: Path, runs: int, work: Path) -> dict[str, Any]:
    python312 = require_python312()
    sdk = runtime_sdk()
    manifest = json.loads((bundle / "manifest.json").read_text())
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    archive = write_archive(bundle, work / "bundle.zip")
    print("synthesizing the dev stage ...", file=sys.stderr)
    assembly = read_assembly(
        synth_stage(
            work / "cdk.out",
            "dev",
            model_version=manifest["bundle_version"],
            context={"modelUnzippedBytes": str(size)},
        )
    )
    refs = placeholder_refs(assembly)
    seen: set[str] = set()
    report: dict[str, Any] = {
        "bundle_version": manifest["bundle_version"],
        "bundle_mb": round(size / 2**20, 2),
        "runs": runs,
        "python": str(python312),
        "functions": {},
    }
    for function in assembly.functions:
        if function.handler in seen:
            continue  # the two release hooks are one package
        seen.add(function.handler)
        label = LABELS.get(function.handler, function.handler)
        row: dict[str, Any] = {}
        for bytecode in (False, True):
            layout = lay_out(
                function,
                work / f"{function.logical_id}-{'pyc' if bytecode else 'source'}",
                bundle_archive=archive,
                bytecode=bytecode,
            )
            if bytecode and not any(layout.opt.rglob("*.cpython-312.pyc")):
                # layers built without a python3.12 ship sources only: compile them here
                precompile(layout, python312)
                row["pyc"] = "compiled by the benchmark"
            elif bytecode:
                row["pyc"] = "shipped in the layers"
            env = function.environment(
                layout, refs, endpoint_url="http://127.0.0.1:9", runtime_dir=sdk
            )
            print(f"{label}: {runs} cold starts, bytecode={bytecode} ...", file=sys.stderr)
            measured = measure_cold_starts(
                layout, env, FIRST_EVENT.get(function.handler), python312=python312, runs=runs
            )
            row["with_pyc" if bytecode else "without_pyc"] = summary(measured)
            row["layout_mb"] = {k: round(v / 2**20, 1) for k, v in layout.size_bytes().items()}
        report["functions"][label] = row
    return report


def summary(measured: ColdStart) -> dict[str, Any]:
    init = ColdStart.median(measured.init_ms)
    first = ColdStart.median(measured.first_invoke_ms) if measured.first_invoke_ms else 0.0
    return {
        "init_ms": round(init, 1),
        "first_invoke_ms": round(first, 1),
        "cold_start_ms": round(init + first, 1),
        "init_ms_runs": [round(v, 1) for v in measured.init_ms],
        "first_invoke_ms_runs": [round(v, 1) for v in measured.first_invoke_ms],
    }


def print_table(report: dict[str, Any]) -> None:
    print(
        f"bundle {report['bundle_version']} ({report['bundle_mb']} MB), median of "
        f"{report['runs']} fresh processes, python3.12 -I -S -B"
    )
    header = f"{'function':16} {'bytecode':9} {'init ms':>8} {'1st invoke ms':>14} {'total ms':>9}"
    print(header)
    print("-" * len(header))
    for label, row in report["functions"].items():
        for key, name in (("without_pyc", "source"), ("with_pyc", "pyc")):
            r = row[key]
            print(
                f"{label:16} {name:9} {r['init_ms']:8.1f} {r['first_invoke_ms']:14.1f} "
                f"{r['cold_start_ms']:9.1f}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="bundle directory (default: train one)")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per case")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cold-start-") as scratch:
        work = Path(scratch)
        bundle = args.bundle
        if bundle is None:
            print("training a small bundle on generated traffic ...", file=sys.stderr)
            bundle = small_bundle(work / "bundle")
        report = measure(Path(bundle), args.runs, work)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
