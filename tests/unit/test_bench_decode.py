"""bench's decoder ratios: the report's shape, on the same events (not the stopwatch)."""

from __future__ import annotations

import orjson


def test_the_decode_report_sets_both_ratios_against_orjson(bundle_dir, live_traffic):
    from ocsf_detect_tools.benchmark_decode import bench_decode_ratios

    lines = [orjson.dumps(e) for e in live_traffic.events[:600]]
    report = bench_decode_ratios(bundle_dir, lines)
    assert report["events"] == 600
    per_event = {k: report[f"{k}_us_per_event"] for k in ("orjson", "decode", "e2e")}
    assert all(v > 0 for v in per_event.values())
    # the ratios are the per-event times over orjson's, as printed (rounded)
    assert (
        abs(report["decode_vs_orjson"] - per_event["decode"] / per_event["orjson"])
        < 0.05 * report["decode_vs_orjson"] + 0.01
    )
    assert (
        abs(report["e2e_vs_orjson"] - per_event["e2e"] / per_event["orjson"])
        < 0.05 * report["e2e_vs_orjson"] + 0.01
    )
    assert report["targets"] == {"decode_vs_orjson": 3.0, "e2e_vs_orjson": 15.0}
