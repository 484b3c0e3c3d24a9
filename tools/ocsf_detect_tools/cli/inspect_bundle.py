"""ocsf-detect inspect DIR"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ocsf_detect_tools.cli import CommandError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "inspect",
        help="show what a bundle holds",
        description="Show a bundle's version, training data, per class its spec (curated "
        "or derived at train), baseline count, features, model, "
        "index and threshold, and its files with their hashes (checked). --verify also "
        "loads it and re-scores its golden events.",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("--verify", action="store_true", help="also load it (hashes, dims, indexes)")
    p.set_defaults(func=run)


def _ts(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def run(args: argparse.Namespace) -> int:
    from ocsf_detect.detector.bundle import BundleError, read_manifest, verify_files
    from ocsf_detect.features.pipeline import FeaturePipeline
    from ocsf_detect.features.spec import HashedFeature
    from ocsf_detect.ocsf.classes import class_name
    from ocsf_detect_tools.training.weights import shared_fields

    try:
        m = read_manifest(args.bundle)
        verify_files(args.bundle, m.files)
    except BundleError as exc:
        raise CommandError(str(exc)) from exc
    t = m.training
    print(f"bundle {m.bundle_version}  (format {m.format_version}, created {m.created_at})")
    print(f"  library: {m.library_version}")
    print(
        f"  training: {t.events:,} events ({t.unsupported} unsupported, {t.rejected} rejected), "
        f"{_ts(t.time_min_ms)} .. {_ts(t.time_max_ms)}"
    )
    for cm in m.models.values():
        fs = cm.features
        print(f"\n  class {cm.class_uid} {cm.class_name}")
        print(
            f"    spec: {cm.spec_origin}, baseline {t.events_per_class.get(str(cm.class_uid), 0):,}"
            f" events ({cm.training.events:,} trained on)"
        )
        print(
            f"    features: {len(fs.features)} declared, unmapped: "
            f"{', '.join(fs.unmapped.selected or []) or 'none'}"
        )
        for f in fs.features:
            pair = (
                f" x {f.together_with}" if isinstance(f, HashedFeature) and f.together_with else ""
            )
            print(f"      {f.name:40s} {f.kind:13s} {f.path}{pair}")
        print(
            f"    model: {cm.model.file} in {cm.model.n_numeric} numeric + "
            f"{cm.model.n_categorical} categorical -> {cm.model.dim} dims "
            f"({cm.training.method}, {cm.training.epochs} epochs, loss {cm.training.final_loss})"
        )
        weights = cm.training.config.get("category_weights")
        base = cm.training.config.get("category_weight")
        if weights and base:
            names = FeaturePipeline(fs).categorical_names
            print(
                f"    category weights below x{base:g} (fields that change together): "
                f"{shared_fields(names, weights, base)}"
            )
        ix = cm.index
        errors = "" if ix.score_error_rate is None else f", score errors {ix.score_error_rate:.2%}"
        print(
            f"    index: {ix.file} {ix.n_items:,} vectors, M={ix.M} ef={ix.ef_search} k={ix.k}, "
            f"recall@k {ix.recall_at_k} on {ix.recall_sample}{errors}, "
            f"screened out {ix.screened_out} (q={ix.contamination_q}), "
            f"{ix.merged_out} merged into a neighbour within {ix.distinct_radius} feature units"
        )
        if cm.fine is not None:
            print(
                f"    fine view: {cm.fine.file} {cm.fine.n_items:,} baseline events of "
                f"{cm.fine.sampled_from:,}, ef={cm.fine.ef_search} (the {ix.k} most common "
                f"behaviours hold {cm.fine.top_share:.0%} of the baseline, below "
                f"{cm.fine.flood_share:g}); "
                + (
                    f"distances in the feature space among {cm.fine.candidates} candidates"
                    + (" and the k-NN view's behaviours" if cm.fine.behaviours_file else "")
                    if cm.fine.in_features
                    else "distances in the embedding"
                )
            )
        elif cm.tails is not None:
            print("    fine view: none (a baseline mostly one flood's record, or format < 13)")
        bands = ", ".join(f"{b.severity}>={b.min_score:.4f}" for b in cm.severity_bands)
        print(f"    threshold {cm.threshold:.4f} for alert rate {cm.alert_rate}: {bands}")
    for uid, u in sorted(t.unmodelled.items(), key=lambda kv: int(kv[0])):
        print(
            f"\n  class {uid} {class_name(int(uid))}: unsupported ({u.reason.value}: "
            f"baseline {u.baseline_events:,} events, a model needs {u.minimum:,})"
        )
    print(f"\n  golden events: {len(m.golden_events)}; files:")
    for name, digest in m.files.items():
        size = (Path(args.bundle) / name).stat().st_size
        print(f"    {name:24s} {size:>12,} B  sha256 {digest[:16]}")
    if args.verify:
        from ocsf_detect.detector.scorer import Detector

        try:
            d = Detector.load(args.bundle)
        except BundleError as exc:
            raise CommandError(str(exc)) from exc
        got = d.selftest()["scores"]
        unscored = [i for i, g in enumerate(got) if g is None]
        if unscored:
            raise CommandError(
                f"golden events {unscored[:5]} (of {len(got)}) are no longer scored; "
                "the bundle does not reproduce what it was built with"
            )
        worst = max(
            (abs(g - e.score) for g, e in zip(got, m.golden_events, strict=True)), default=0.0
        )
        # the release hook's own rule and default tolerance: a bundle --verify passes is
        # one its pre-traffic check passes on the same libraries
        from release_hook.golden import Tolerance

        tolerance = Tolerance()
        off = [
            i
            for i, (g, e) in enumerate(zip(got, m.golden_events, strict=True))
            if not tolerance.accepts(e.score, g)
        ]
        if off:
            raise CommandError(
                f"golden events {off[:5]} (of {len(got)}) score differently than when the "
                f"bundle was built (largest difference {worst:.3g}, tolerance "
                f"{tolerance.absolute:g} + {tolerance.relative:g} x the score): the release "
                "hook would refuse it; is onnxruntime or hnswlib another version?"
            )
        print(f"\n  loaded in {d.load_ms:.0f} ms; golden scores reproduce within {worst:.2e}")
    return 0
