"""Build a bundle from baseline events: the ``ocsf-detect train`` pipeline.

Per supported class with enough events: fit the feature spec, train the TabularResNet
self-supervised, export it to ONNX, embed the baseline *with onnxruntime* (the serving
path), screen out the most isolated q% as likely contamination, keep one event per
neighbourhood of the distinct radius (the index holds distinct behaviours, so a flood
of near-identical events counts once), index those in HNSW (the cheapest ef whose
recall@k against exact search meets the target, counting the exact re-checks of scores
that reach the threshold), score a held-out share as the scorer will to calibrate the
threshold and severity bands, and keep golden events. Needs the ``train`` extra (torch).
"""

from __future__ import annotations

import dataclasses
import platform
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from ocsf_detect import __version__
from ocsf_detect.detector.archive import listed_files
from ocsf_detect.detector.bundle import sha256_file
from ocsf_detect.detector.calibrate import calibrate, threshold_for
from ocsf_detect.detector.fine import (
    FineInfo,
    FineRows,
    FineView,
    copies_of,
    fine_members,
    fine_queries,
    is_spread,
)
from ocsf_detect.detector.index import (
    SPACE,
    ExactBase,
    IndexParams,
    build_index,
    canonical_index_file,
    distance_ratio,
    distinct_net,
    exact_knn,
    knn,
    knn_score,
    rescore_exact,
    tune_ef,
)
from ocsf_detect.detector.manifest import (
    MANIFEST_NAME,
    ClassModel,
    GoldenEvent,
    IndexInfo,
    Manifest,
    ModelIO,
    ScoreTails,
    TrainingInfo,
    TrainingSummary,
    UnmodelledClass,
    content_digest,
)
from ocsf_detect.detector.scorer import (
    FeatureRerank,
    nearest_behaviours,
    serve_scores,
    space_rows,
)
from ocsf_detect.detector.surprise import (
    IsolationInfo,
    IsolationTrees,
    Tail,
    combined,
    evidence,
    trees_judge,
)
from ocsf_detect.features.pipeline import FeatureMatrix, FeaturePipeline, fit_spec
from ocsf_detect.features.spec import ClassSpec
from ocsf_detect.gcpause import gc_paused
from ocsf_detect.ocsf.classes import DETECTION_FINDING, class_name
from ocsf_detect.ocsf.outcomes import (
    Parsed,
    ParseOutcome,
    Rejected,
    Unsupported,
    UnsupportedReason,
)
from ocsf_detect.ocsf.parser import EventParser, decode_event
from ocsf_detect_tools.config import DetectorConfig
from ocsf_detect_tools.eventio import event_uid
from ocsf_detect_tools.training.weights import category_weights, shared_fields

if TYPE_CHECKING:  # torch is a training extra: imported when a build trains
    from ocsf_detect_tools.training.fit import TrainConfig
    from ocsf_detect_tools.training.parallel import TrainJob

Log = Callable[[str], None]


class BuildError(Exception):
    """Training data that cannot make a bundle (e.g. no supported class with enough events)."""


def _noop(_: str) -> None:
    return None


def build_bundle(
    lines: Sequence[bytes],
    out_dir: Path,
    config: DetectorConfig,
    *,
    sources: Sequence[str] = (),
    log: Log = _noop,
    accept: Callable[[Manifest], bool] | None = None,
) -> Manifest:
    """Train on ``lines`` and write the bundle to ``out_dir`` (new, empty, or an earlier
    bundle, which is replaced). The bundle is built in a sibling directory and moved into
    place when complete: an interrupted build leaves ``out_dir`` as it was, and so does a
    bundle that ``accept`` refuses (the manifest is returned all the same)."""
    final = Path(out_dir)
    problem = out_dir_problem(final)
    if problem:
        raise BuildError(problem)
    staging = final.parent / f".{final.name}.building"
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted build
    try:
        manifest = _build(lines, staging, config, sources=sources, log=log)
        if accept is None or accept(manifest):
            problem = out_dir_problem(final)  # again: the directory may have changed since
            if problem:
                raise BuildError(problem)
            if final.exists():
                shutil.rmtree(final)  # an earlier bundle, replaced
            staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _build(
    lines: Sequence[bytes],
    out_dir: Path,
    config: DetectorConfig,
    *,
    sources: Sequence[str],
    log: Log,
) -> Manifest:
    import onnxruntime as ort  # noqa: F401 - fail early if the runtime is missing

    from ocsf_detect_tools.training.export import (
        INPUT_CATEGORICAL,
        INPUT_NUMERIC,
        OPSET,
        OUTPUT_EMBEDDING,
    )
    from ocsf_detect_tools.training.fit import TrainConfig, training_observer
    from ocsf_detect_tools.training.parallel import TrainJob, train_all, worker_count

    specs = config.class_specs()
    parser = EventParser({uid: FeaturePipeline(s).plan for uid, s in specs.items()})
    with gc_paused():
        outcomes = parser.parse_many(lines)
    # A neighbour without metadata.uid is named by its line in the training input.
    line_of = {id(o.event): n for n, o in enumerate(outcomes, 1) if isinstance(o, Parsed)}
    by_class: dict[int, list[Parsed]] = {}
    unsupported = Counter[int]()
    rejected = 0
    for o in outcomes:
        if isinstance(o, Parsed):
            by_class.setdefault(o.class_uid, []).append(o)
        elif isinstance(o, Unsupported):
            unsupported[o.class_uid] += 1
        elif isinstance(o, Rejected):
            rejected += 1
    usable = {c: v for c, v in by_class.items() if len(v) >= config.min_class_events}
    unmodelled: dict[str, UnmodelledClass] = {}
    for c, v in by_class.items():
        if c not in usable:
            log(f"class {c}: only {len(v)} events (< {config.min_class_events}); not modelled")
            unmodelled[str(c)] = _too_few(len(v), config.min_class_events)
    derived = _derive_classes(lines, outcomes, unsupported, config, log)
    for c, d in derived.items():
        specs[c] = d.spec
        by_class[c] = usable[c] = d.parsed
        rejected += d.rejected
        line_of.update({id(p.event): n for p, n in zip(d.parsed, d.lines, strict=True)})
        del unsupported[c]
    if config.derive_specs:
        for c, n in sorted(unsupported.items()):
            if c != DETECTION_FINDING:
                unmodelled[str(c)] = _too_few(n, config.min_derived_events)
                log(f"class {c}: only {n} events (< {config.min_derived_events}); not modelled")
    if not usable:
        raise BuildError(
            f"no supported class has {config.min_class_events}+ usable events "
            f"({len(lines)} lines: {rejected} rejected, {sum(unsupported.values())} unsupported)"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True)
    rng = np.random.default_rng(config.train.seed)
    models: dict[str, ClassModel] = {}
    golden: list[GoldenEvent] = []
    t = config.train
    train_cfg = TrainConfig(
        method=t.method,
        dim=t.dim,
        width=t.width,
        blocks=t.blocks,
        dropout=t.dropout,
        numeric_skip=t.numeric_skip,
        epochs=t.epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        mask_rate=t.mask_rate,
        max_steps=t.max_steps,
        seed=t.seed,
        category_weight=t.category_weight,
        share_redundant_categories=t.share_redundant_categories,
        anchor_scale=t.anchor_scale,
        augment=t.augment,
        augment_uniform=t.augment_uniform,
        novel_weight=t.novel_weight,
        neighbour_share=t.neighbour_share,
        max_seconds=t.max_minutes * 60,
    )
    # Every class's inputs first, drawing from ``rng`` in the order a class-by-class build
    # always did, so that training them side by side gives the same bundle.
    prepared: list[_Prepared] = []
    for class_uid, parsed in sorted(usable.items()):
        log(f"class {class_uid} ({class_name(class_uid)}): {len(parsed):,} events")
        order = rng.permutation(len(parsed))
        n_hold = max(1, int(len(parsed) * config.holdout))
        hold = [parsed[i] for i in order[:n_hold]]
        train = [parsed[i] for i in order[n_hold:]]
        times = np.array([p.time_ms for p in train], dtype=np.int64)
        spec = fit_spec(specs[class_uid], [p.event for p in train], times)
        pipeline = FeaturePipeline(spec)
        # Re-extract with the fitted plan (it may read unmapped fields the first did not).
        train_p = _reparse(parser_for(pipeline), train)
        hold_p = _reparse(parser_for(pipeline), hold)
        train_m = pipeline.transform_parsed(train_p)
        fit_rows = (
            rng.choice(len(train_m), t.max_train_events, replace=False)
            if len(train_m) > t.max_train_events
            else np.arange(len(train_m))
        )
        hold_m = pipeline.transform_parsed(hold_p)
        sample_rows = rng.choice(
            len(hold_m), min(config.index.recall_sample, len(hold_m)), replace=False
        )
        job = TrainJob(
            class_uid,
            train_m.numeric[fit_rows],
            train_m.categorical[fit_rows],
            pipeline.cardinalities,
            for_features(train_cfg, pipeline, train_m.categorical),
            out_dir / f"model-{class_uid}.onnx",
        )
        prepared.append(
            _Prepared(
                class_uid,
                parsed,
                spec,
                pipeline,
                train_p,
                train_m,
                hold_p,
                hold_m,
                sample_rows,
                job,
                rejected=len(train) - len(train_p),
            )
        )
    jobs = [prep.job for prep in prepared]
    workers = worker_count(jobs, t.workers)
    if workers > 1:
        log(f"training {len(jobs)} networks in {workers} processes")
    reports = train_all(jobs, workers)
    observer = training_observer()
    for prep in prepared:
        class_uid, parsed, spec, pipeline = prep.class_uid, prep.parsed, prep.spec, prep.pipeline
        train_p, train_m, hold_p, hold_m = prep.train_p, prep.train_m, prep.hold_p, prep.hold_m
        if workers == 1:
            log(f"class {class_uid} ({class_name(class_uid)}): training its network")
        report = next(reports)  # trained now (one process) or already (workers)
        if workers > 1:
            log(f"class {class_uid} ({class_name(class_uid)}): network trained in a worker")
            if observer is not None:  # the worker's steps, told once it is done
                observer(1, report.planned_steps, report.losses[0], 0.0)
                observer(report.steps, report.planned_steps, report.losses[-1], report.seconds)
        log(
            f"  trained ({report.method}, {report.steps:,} steps in {report.epochs} epochs, "
            f"{report.seconds}s, loss {report.losses[-1]:.4f})"
            + (
                f"; stopped at [train] max_minutes = {t.max_minutes:g}"
                if report.stopped_early
                else ""
            )
        )
        trained_cfg = prep.job.config
        if trained_cfg.share_redundant_categories:
            lowered = shared_fields(
                pipeline.categorical_names,
                trained_cfg.category_weights,
                trained_cfg.category_weight,
            )
            log(f"  fields that change together, weight below x{t.category_weight:g}: {lowered}")
        model_file = prep.job.onnx_path.name
        session = _session(out_dir / model_file)
        train_emb = _run(session, train_m.numeric, train_m.categorical)
        hold_emb = _run(session, hold_m.numeric, hold_m.categorical)

        ix = config.index
        params = _index_params(config)
        # format 12 ([index] rerank_candidates): the distinct behaviours are drawn, and the
        # k nearest decided, in the weighted feature space the embedding preserves; the
        # index over their embeddings retrieves the candidates
        weights = trained_cfg.category_weights
        in_space = ix.rerank_candidates > 0
        if in_space:
            train_space = space_rows(pipeline, train_m, weights, t.novel_weight)
        indexed = _indexed_rows(
            train_space if in_space else train_emb,
            train_m,
            pipeline,
            config,
            np.array([p.time_ms for p in train_p]),
            trained_cfg.category_weights,
        )
        keep, screened, merged, ratio = (
            indexed.rows,
            indexed.screened,
            indexed.merged,
            indexed.ratio,
        )
        base = train_emb[keep]
        space = None
        if in_space:
            # the net was drawn in the feature space itself; the embedding's distance ratio
            # still converts the overlay's (embedding) distances
            ratio = distance_ratio(train_emb[keep], train_space[keep])
            space_base = np.ascontiguousarray(train_space[keep])
            space_exact = ExactBase.of(space_base)
            space = FeatureRerank(
                space_base,
                lambda: space_exact,  # noqa: B023 - used before the loop moves on
                space_rows(pipeline, hold_m, weights, t.novel_weight),
                ix.rerank_candidates,
            )
        index = build_index(base, params)
        sample = hold_emb[prep.sample_rows]
        ef, quality = tune_ef(
            index,
            base,
            sample,
            ix.k if space is None else max(ix.k, ix.rerank_candidates),
            recall_target=ix.recall_target,
            alert_rate=config.alert_rate,
            start=ix.ef_search,
        )
        log(
            f"  index: {len(base):,} vectors ({screened} screened out, {merged} merged), "
            f"ef={ef}, recall@{ix.k if space is None else ix.rerank_candidates}="
            f"{quality.recall:.4f}, "
            f"score errors {quality.score_errors:.2%} (alerts re-checked exactly)"
        )
        distance = _served_scores(
            index, base, hold_emb, ix.k, config.alert_rate, indexed.mass, space
        )
        isolation, isolation_info, tails, cover, covered = None, None, None, None, None
        if config.isolation.enabled:
            trees = _grow_isolation(train_m.take(keep), pipeline, config)
            isolation = trees.scores(hold_m.numeric, hold_m.categorical)
            tails = fit_tails(distance, isolation, config)
            isolation_file = f"isolation-{class_uid}.npz"
            trees.save(out_dir / isolation_file)
            isolation_info = IsolationInfo(
                file=isolation_file,
                trees=len(trees.roots),
                sample_size=trees.sample_size,
                fitted_on=len(keep),
                category_weight=t.category_weight,
                novel_weight=t.novel_weight,
                scope=config.isolation.scope,
                # the distinct radius in embedding units: within it of an indexed
                # behaviour, an event is one the baseline holds
                # (format 12: in the feature space's)
                cover_radius=ix.distinct_radius * (ratio if space is None else 1.0),
            )
            cover = isolation_info.cover()
            if cover is not None:
                if space is None:
                    covered = exact_knn(base, hold_emb, 1)[1][:, 0] <= cover
                else:
                    covered = exact_knn(space.base, space.queries, 1)[1][:, 0] <= cover
                parts = evidence(distance, isolation, tails)
                judged = covered if parts is None else trees_judge(parts, covered)
                rest = parts is not None and parts.beyond is not None
                log(
                    f"  isolation view: judges the {judged.mean():.0%} of held-out events "
                    f"(within the distinct radius of an indexed behaviour: {covered.mean():.0%}"
                    + ("; the rest lie beyond the k-NN view's measured range)" if rest else ")")
                )
        fine_space = None
        if config.fine.space == "features":  # (never beside format 12: the config says so)
            fine_space = (
                fine_queries(train_m, pipeline.novel_columns, t.novel_weight),
                fine_queries(hold_m, pipeline.novel_columns, t.novel_weight),
                [float(w) for w in weights],
            )
        fine = _fine_view(
            config,
            indexed.top_share,
            train_emb,
            hold_emb,
            tails is not None,
            fine_space,
            None if space is not None else keep,
        )
        if fine is None:
            log(
                f"  fine view: none (the {ix.k} most common behaviours hold "
                f"{indexed.top_share:.0%} of the baseline; "
                + (
                    f"at least [fine] flood_share = {config.fine.flood_share:g})"
                    if config.fine.enabled and tails is not None
                    else "off)"
                )
            )
            hold_combined = combined(distance, isolation, tails, covered)
        else:
            fine_file = f"fine-{class_uid}.bin"
            fine.view.index.save_index(str(out_dir / fine_file))
            canonical_index_file(out_dir / fine_file)  # the same baseline, the same bytes
            fine_numeric_file, fine_codes_file, fine_behaviours_file = None, None, None
            if fine.view.rows is not None:
                fine_rows = fine.view.rows()
                fine_numeric_file = f"fine-{class_uid}-numeric.npy"
                fine_codes_file = f"fine-{class_uid}-codes.npy"
                np.save(out_dir / fine_numeric_file, fine_rows.numeric, allow_pickle=False)
                np.save(out_dir / fine_codes_file, fine_rows.codes, allow_pickle=False)
            if fine.view.behaviours is not None:
                fine_behaviours_file = f"fine-{class_uid}-behaviours.npy"
                held = fine.view.behaviours()
                np.save(out_dir / fine_behaviours_file, held, allow_pickle=False)
            log(
                f"  fine view: {fine.view.index.get_current_count():,} baseline events (the "
                f"{ix.k} most common behaviours hold {indexed.top_share:.0%} of the baseline)"
            )
            hold_combined = (
                combined(distance, isolation, tails, covered) + fine.hold_evidence
            ).astype(np.float32)
        cal = calibrate(hold_combined, config.alert_rate)
        # the held-out events as served with that threshold (golden events: exactly these);
        # the k-NN score alone is already that (exact wherever it reaches the threshold)
        hold_scores = distance
        if tails is not None:
            exact = ExactBase.of(base)
            hold_scores = serve_scores(
                index,
                lambda: exact,  # noqa: B023 - called before the loop moves on
                hold_emb,
                ix.k,
                isolation,
                tails,
                cal.threshold,
                indexed.mass,
                cover_radius=cover,
                space=space,
                fine=None if fine is None else fine.view,
                fine_rows=None if fine_space is None else fine_space[1],
            ).scores
        index_file = f"index-{class_uid}.bin"
        index.save_index(str(out_dir / index_file))
        if not canonical_index_file(out_dir / index_file):
            log(
                "  note: the index file's layout is not the one known here, so its "
                "bytes may differ between identical builds"
            )
        mass_file = None  # every mass 1: the plain mean, as bundles before format 6
        if ix.mass_cap > 1:
            mass_file = f"mass-{class_uid}.npy"
            np.save(out_dir / mass_file, indexed.mass, allow_pickle=False)
        space_file = None
        if space is not None:
            space_file = f"space-{class_uid}.npy"
            np.save(out_dir / space_file, space.base, allow_pickle=False)
        ids_file = None
        kept_events = [train_p[i] for i in keep]
        uids = [event_uid(p.event) or f"line {line_of.get(id(p.event))}" for p in kept_events]
        ids_file = f"ids-{class_uid}.json"
        (out_dir / ids_file).write_bytes(orjson.dumps(uids))
        all_times = [p.time_ms for p in parsed]
        models[str(class_uid)] = ClassModel(
            class_uid=class_uid,
            class_name=class_name(class_uid),
            features=spec,
            spec_origin="derived" if class_uid in derived else "curated",
            model=ModelIO(
                file=model_file,
                input_numeric=INPUT_NUMERIC,
                input_categorical=INPUT_CATEGORICAL,
                output=OUTPUT_EMBEDDING,
                n_numeric=pipeline.n_numeric,
                n_categorical=len(pipeline.categorical_names),
                dim=train_cfg.dim,
                opset=OPSET,
            ),
            index=IndexInfo(
                file=index_file,
                space=SPACE,
                M=ix.M,
                ef_construction=ix.ef_construction,
                ef_search=ef,
                k=ix.k,
                n_items=len(base),
                recall_at_k=round(quality.recall, 5),
                score_error_rate=round(quality.score_errors, 5),
                recall_sample=len(sample),
                contamination_q=ix.contamination,
                screened_out=screened,
                distinct_radius=ix.distinct_radius,
                distance_ratio=round(ratio, 8),
                merged_out=merged,
                ids_file=ids_file,
                mass_file=mass_file,
                mass_cap=ix.mass_cap,
                mass_bucket_s=ix.mass_bucket_minutes * 60,
                space_file=space_file,
                rerank_candidates=0 if space is None else ix.rerank_candidates,
                space_weights=(
                    None if space is None else [float(w) for w in trained_cfg.category_weights]
                ),
                space_novel_weight=t.novel_weight,
            ),
            isolation=isolation_info,
            tails=None if tails is None else ScoreTails(knn=tails[0], isolation=tails[1]),
            fine=(
                None
                if fine is None
                else FineInfo(
                    file=fine_file,
                    n_items=fine.view.index.get_current_count(),
                    sampled_from=len(train_emb) + len(hold_emb),
                    ef_search=fine_ef(config),
                    tail=fine.view.tail,
                    top_share=round(indexed.top_share, 6),
                    flood_share=config.fine.flood_share,
                    numeric_file=fine_numeric_file,
                    codes_file=fine_codes_file,
                    category_weights=None if fine_space is None else fine_space[2],
                    novel_weight=None if fine_space is None else t.novel_weight,
                    candidates=1 if fine_space is None else config.fine.candidates,
                    behaviours_file=fine_behaviours_file,
                )
            ),
            threshold=cal.threshold,
            alert_rate=cal.alert_rate,
            severity_bands=cal.bands,
            heldout_events=cal.heldout_events,
            training=TrainingInfo(
                method=report.method,
                events=len(train_p),
                rejected=prep.rejected,
                time_min_ms=min(all_times),
                time_max_ms=max(all_times),
                epochs=report.epochs,
                steps=report.steps,
                seconds=report.seconds,
                final_loss=report.losses[-1],
                # the class's own settings: its per-field category weights (in the order
                # of the spec's categorical fields), novel and scaled columns
                config=trained_cfg.__dict__,
            ),
        )
        golden += _golden(class_uid, hold_p, hold_scores, cal.threshold)
    all_times = [p.time_ms for v in usable.values() for p in v]
    summary = TrainingSummary(
        events=len(lines),
        events_per_class={str(c): len(v) for c, v in sorted(by_class.items())},
        unsupported=sum(unsupported.values()),
        rejected=rejected,
        time_min_ms=min(all_times) if all_times else None,
        time_max_ms=max(all_times) if all_times else None,
        sources=[Path(s).name for s in sources],
        unmodelled=unmodelled,
    )
    files = {p.name: sha256_file(p) for p in sorted(out_dir.iterdir()) if p.is_file()}
    manifest = Manifest(
        bundle_version="",  # named below by its content
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        library_version=f"{__version__} (python {platform.python_version()})",
        classes=sorted(int(c) for c in models),
        models=models,
        training=summary,
        golden_events=golden,
        files=files,
    )
    digest = content_digest(manifest.model_dump(mode="json"))
    manifest = manifest.model_copy(
        update={"bundle_version": f"{config.bundle_semver}+{digest[:12]}"}
    )
    (out_dir / MANIFEST_NAME).write_bytes(
        orjson.dumps(manifest.model_dump(mode="json"), option=orjson.OPT_INDENT_2)
    )
    return manifest


def _too_few(events: int, minimum: int) -> UnmodelledClass:
    return UnmodelledClass(
        reason=UnsupportedReason.TOO_FEW_BASELINE_EVENTS, baseline_events=events, minimum=minimum
    )


@dataclasses.dataclass(frozen=True)
class DerivedClass:
    """A class modelled on a derived spec: the spec, its parsed baseline events with
    their line numbers, and how many of its events the spec's fields rejected."""

    spec: ClassSpec
    parsed: list[Parsed]
    lines: list[int]
    rejected: int


def _derive_classes(
    lines: Sequence[bytes],
    outcomes: Sequence[ParseOutcome],
    unsupported: Counter[int],
    config: DetectorConfig,
    log: Log,
) -> dict[int, DerivedClass]:
    """Derived specs (``derived_specs.derive_spec``) for the classes without a curated
    spec that have ``min_derived_events`` in the baseline, and their events parsed."""
    wanted = {
        c
        for c, n in unsupported.items()
        if config.derive_specs and n >= config.min_derived_events and c != DETECTION_FINDING
    }
    if not wanted:
        return {}
    from ocsf_detect_tools.derived_specs import DeriveSettings, derive_spec

    events: dict[int, list[tuple[int, dict[str, Any]]]] = {c: [] for c in wanted}
    for n, (raw, outcome) in enumerate(zip(lines, outcomes, strict=True), 1):
        if isinstance(outcome, Unsupported) and outcome.class_uid in wanted:
            event = decode_event(raw)
            if isinstance(event, dict):
                events[outcome.class_uid].append((n, event))
    out: dict[int, DerivedClass] = {}
    settings = DeriveSettings()
    for c, items in sorted(events.items()):
        derived = derive_spec(c, [e for _, e in items], settings)
        parser = EventParser({c: FeaturePipeline(derived.spec).plan})
        parsed, numbers = [], []
        for n, event in items:
            outcome = parser.parse_object(event)
            if isinstance(outcome, Parsed):
                parsed.append(outcome)
                numbers.append(n)
        if len(parsed) < config.min_derived_events:
            log(
                f"class {c}: {len(items) - len(parsed)} of {len(items)} events have fields of "
                "mixed types; too few left for a derived spec"
            )
            continue
        typed = f"OCSF schema {derived.schema_version}" if derived.schema_version else "values"
        log(
            f"class {c} ({class_name(c)}): no curated spec; derived "
            f"{len(derived.spec.features)} features from {len(items):,} events "
            f"(typed by the {typed})"
        )
        out[c] = DerivedClass(derived.spec, parsed, numbers, len(items) - len(parsed))
    return out


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """A class ready to train: its events, fitted features, model inputs and the job."""

    class_uid: int
    parsed: list[Parsed]
    spec: ClassSpec
    pipeline: FeaturePipeline
    train_p: list[Parsed]
    train_m: FeatureMatrix
    hold_p: list[Parsed]
    hold_m: FeatureMatrix
    sample_rows: np.ndarray
    """The held-out rows the index's recall is tuned on."""
    job: TrainJob
    rejected: int
    """Training events the fitted plan refused."""


def for_features(
    config: TrainConfig, pipeline: FeaturePipeline, categorical: np.ndarray
) -> TrainConfig:
    """The training settings a class's features decide: corruption within the spec's clip,
    missing indicators kept 0/1, novel-amount columns corrupted over the whole range, and
    each categorical field's weight from how its mismatches go with the others' in the
    baseline (``categorical``: the training events' codes)."""
    weights = category_weights(
        categorical, config.category_weight, config.share_redundant_categories
    )
    return dataclasses.replace(
        config,
        augment_range=pipeline.spec.clip,
        scaled_columns=len(pipeline.numeric_names),
        novel_columns=pipeline.novel_columns,
        category_weights=tuple(float(w) for w in weights),
    )


def parser_for(pipeline: FeaturePipeline) -> EventParser:
    return EventParser({pipeline.class_uid: pipeline.plan})


def _reparse(parser: EventParser, items: list[Parsed]) -> list[Parsed]:
    out = [parser.parse_object(p.event) for p in items]
    return [o for o in out if isinstance(o, Parsed)]


def _session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _run(session: Any, numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    out = []
    for s in range(0, len(numeric), 8192):
        out.append(
            session.run(
                None, {"numeric": numeric[s : s + 8192], "categorical": categorical[s : s + 8192]}
            )[0]
        )
    return np.vstack(out) if out else np.zeros((0, 1), dtype=np.float32)


def out_dir_problem(out_dir: Path) -> str | None:
    """Why a bundle cannot be written to ``out_dir``, or None. A bundle replaces an earlier
    bundle or fills an empty directory; it never deletes anything else."""
    if out_dir.is_symlink():
        return f"{out_dir} is a symbolic link; give the directory it points to, or a new one"
    if not out_dir.exists():
        return None
    if not out_dir.is_dir():
        return f"{out_dir} exists and is not a directory; give a directory for the bundle"
    if out_dir.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        return f"{out_dir} is the working directory or above it; give a new directory"
    entries = {p.name for p in out_dir.iterdir()}
    if not entries:
        return None
    listed = _bundle_files(out_dir)
    if listed is None:
        return (
            f"{out_dir} exists, is not empty and holds no bundle (no bundle's "
            f"{MANIFEST_NAME}); give a new or empty directory, or an earlier bundle to replace"
        )
    others = sorted(entries - listed - {MANIFEST_NAME})
    if others:
        return (
            f"{out_dir} holds a bundle and files that are not part of it "
            f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); a bundle "
            "replaces only a bundle: move them, or give a new directory"
        )
    return None


def _bundle_files(out_dir: Path) -> set[str] | None:
    """The top-level names a bundle's manifest in ``out_dir`` lists (any format version),
    or None when there is no bundle's manifest there."""
    files = listed_files(out_dir)
    return None if files is None else {name.split("/", 1)[0] for name in files}


def fit_tails(
    knn_distance: np.ndarray, isolation: np.ndarray, config: DetectorConfig
) -> tuple[Tail, Tail]:
    """Both views' tails from their held-out scores, with the isolation view's floor and
    the measured range as ``config`` says (the model-free evaluation fits the same)."""
    measured = config.isolation.measured_range
    return (
        Tail.fit(knn_distance, measured=measured),
        Tail.fit(
            isolation,
            config.isolation_floor_quantile(),
            measured=measured,
            uncovered_quantile=config.isolation_uncovered_quantile(),
        ),
    )


FINE_PARAMS = IndexParams(M=16, ef_construction=100, ef_search=32, k=1)  # k = 1: cheap


@dataclasses.dataclass(frozen=True)
class BuiltFine:
    """A class's fine view as the build made it, and the held-out events' evidence as
    calibration counts it (their distance to the training events)."""

    view: FineView
    hold_evidence: np.ndarray


def _fine_view(
    config: DetectorConfig,
    share: float,
    train_emb: np.ndarray,
    hold_emb: np.ndarray,
    two_views: bool,
    space: FineSpace | None = None,
    behaviours: np.ndarray | None = None,
) -> BuiltFine | None:
    """The fine view of a class whose baseline is spread (``fine.is_spread``): an index
    over every baseline event's embedding (up to ``[fine] max_events``), its tail fitted
    on the held-out events' exact nearest distances to the training events, which then
    join the index. ``space`` (``[fine] space = "features"``, format 15): the training and
    held-out events' rows as ``FineRows`` stores them and the fields' weights; the
    distances are then measured in the feature space; ``behaviours``: the training rows
    the k-NN index holds, in its order, whose rows in the view are then candidates too.
    None where the baseline is mostly a flood's record, the view is off, or the score has
    one view (no tails to sum with)."""
    fc = config.fine
    if not (fc.enabled and two_views and is_spread(share, fc.flood_share)):
        return None
    rows, held, measure = None, None, None
    if space is not None:
        (train_n, train_c), (hold_n, hold_c), weights = space

        def measure(members: np.ndarray) -> np.ndarray:
            return FineRows.of(train_n[members], train_c[members], weights).nearest_exact(
                hold_n, hold_c
            )

    fit = fit_fine(train_emb, hold_emb, config, measure)
    if space is not None:
        rows = FineRows.of(
            np.ascontiguousarray(np.vstack([train_n[fit.train_rows], hold_n[fit.hold_rows]])),
            np.ascontiguousarray(np.vstack([train_c[fit.train_rows], hold_c[fit.hold_rows]])),
            weights,
        )
        if behaviours is not None:
            position = np.full(len(train_emb), -1, dtype=np.int32)
            position[fit.train_rows] = np.arange(len(fit.train_rows), dtype=np.int32)
            held = position[np.asarray(behaviours, dtype=np.int64)]
    params = dataclasses.replace(FINE_PARAMS, ef_search=fine_ef(config))
    index = build_index(fit.vectors, params, threads=1)
    exact, copies = ExactBase.of(fit.vectors), copies_of(fit.vectors)
    view = FineView(
        index,
        lambda: exact,
        fit.tail,
        lambda: copies,
        None if rows is None else (lambda: rows),
        1 if rows is None else fc.candidates,
        None if held is None else (lambda: held),
    )
    return BuiltFine(view, fit.tail.surprise(fit.hold_distance))


def fine_ef(config: DetectorConfig) -> int:
    """The fine index's search width: ``[fine] ef_search``, and in the feature space at
    least the candidates it retrieves."""
    fc = config.fine
    return fc.ef_search if fc.space == "embedding" else max(fc.ef_search, fc.candidates)


# (training rows, held-out rows, category weights): the fine view's feature space
FineSpace = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[float]]


@dataclasses.dataclass(frozen=True)
class FineFit:
    """What the fine view holds and how it counts, in whatever space it was fitted in."""

    vectors: np.ndarray  # float32: the training members, then the held-out ones
    tail: Tail
    hold_distance: np.ndarray  # each held-out event's exact distance to the training members
    train_rows: np.ndarray  # the members' rows among the training and held-out events
    hold_rows: np.ndarray


def fit_fine(
    train: np.ndarray,
    hold: np.ndarray,
    config: DetectorConfig,
    measure: Callable[[np.ndarray], np.ndarray] | None = None,
) -> FineFit:
    """The fine view's members (``fine.fine_members``) and its tail, fitted on the held-out
    events' exact nearest distances to the training members; the held-out members join
    after. The build fits it on embeddings, the model-free variant on the weighted
    features (``evaluation.weighted_knn_scores``). ``measure``: the held-out events'
    distances to the training members given their rows, where those are measured in
    another space than ``train``'s (format 15: the feature space's)."""
    fc = config.fine
    train_rows, hold_rows = fine_members(len(train), len(hold), fc.max_events, config.train.seed)
    members = np.ascontiguousarray(train[train_rows], dtype=np.float32)
    measured = measure(train_rows) if measure is not None else None
    hold_distance = exact_knn(members, hold, 1)[1][:, 0] if measured is None else measured
    tail = Tail.fit(hold_distance, measured=config.isolation.measured_range)
    vectors = np.ascontiguousarray(np.vstack([members, hold[hold_rows]]), dtype=np.float32)
    return FineFit(vectors, tail, hold_distance, train_rows, hold_rows)


def _grow_isolation(
    matrix: FeatureMatrix, pipeline: FeaturePipeline, config: DetectorConfig
) -> IsolationTrees:
    from ocsf_detect_tools.training.isolation import grow_isolation

    return grow_isolation(
        matrix,
        pipeline.cardinalities,
        category_weight=config.train.category_weight,
        novel=(pipeline.novel_columns, config.train.novel_weight),
        trees=config.isolation.trees,
        sample_size=config.isolation.sample_size,
        seed=config.train.seed,
        uncut=pipeline.hour_columns if config.isolation.hour == "uncut" else (),
        arc_columns=pipeline.hour_columns if config.isolation.hour == "arc" else (),
    )


def _index_params(config: DetectorConfig) -> IndexParams:
    ix = config.index
    return IndexParams(M=ix.M, ef_construction=ix.ef_construction, ef_search=ix.ef_search, k=ix.k)


@dataclasses.dataclass(frozen=True)
class IndexedRows:
    """The baseline rows the index holds, and what each stands for."""

    rows: np.ndarray
    mass: np.ndarray  # float32, one per row: distinct hours of its events, 1..mass_cap
    screened: int
    merged: int
    ratio: float  # embedding / feature distance ratio
    # the share of the kept baseline events merged into the k most common behaviours
    top_share: float = 0.0


def recurrence_mass(
    owner: np.ndarray, times_ms: np.ndarray, n_kept: int, bucket_s: int, cap: int
) -> np.ndarray:
    """For each kept behaviour, the number of distinct ``bucket_s`` periods in which the
    events merged into it (``owner``) occurred, between 1 and ``cap``: recurrence over
    time, not volume, so a burst of any size counts once."""
    buckets = np.asarray(times_ms, dtype=np.int64) // (bucket_s * 1000)
    pairs = np.unique(np.stack([owner, buckets], axis=1), axis=0)
    spread = np.bincount(pairs[:, 0], minlength=n_kept)
    return np.clip(spread, 1, cap).astype(np.float32)


def _indexed_rows(
    emb: np.ndarray,
    matrix: FeatureMatrix,
    pipeline: FeaturePipeline,
    config: DetectorConfig,
    times_ms: np.ndarray,
    category_weights: Sequence[float],
) -> IndexedRows:
    """The baseline rows the index holds: the most isolated ``contamination`` share
    screened out, then one row per neighbourhood of the distinct radius, with its mass
    (``recurrence_mass`` of the events it absorbed). ``category_weights``: the class's
    per-field weights of the space the embedding preserves (``for_features``)."""
    ix = config.index
    keep, screened = _screen(emb, _index_params(config), ix.contamination)
    # Measured in the space the embedding preserves, so the radius is in its units; the
    # feedback overlay reads a judged event's feature distance in the embedding's units
    # by it too (``FeedbackOverlay.nearest_in_both``), whatever the radius.
    rows = keep[:: max(1, len(keep) // 8000)]
    space = matrix.take(rows).dense(
        pipeline.cardinalities,
        category_weights,
        (pipeline.novel_columns, config.train.novel_weight),
    )
    ratio = distance_ratio(emb[rows], space)
    net, owner = distinct_net(emb[keep], ix.distinct_radius * ratio, seed=config.train.seed)
    mass = recurrence_mass(
        owner, np.asarray(times_ms)[keep], len(net), ix.mass_bucket_minutes * 60, ix.mass_cap
    )
    return IndexedRows(
        keep[net], mass, screened, len(keep) - len(net), ratio, top_share(owner, len(net), ix.k)
    )


def top_share(owner: np.ndarray, n_kept: int, k: int) -> float:
    """The share of the baseline events (``owner``: the behaviour each was merged into)
    that the ``k`` most common behaviours hold: near 1 for a baseline that is mostly one
    flood's record, k / n for one spread evenly over n behaviours."""
    if len(owner) == 0:
        return 0.0
    counts = np.bincount(owner, minlength=n_kept)
    return float(np.sort(counts)[::-1][:k].sum() / len(owner))


def _served_scores(
    index: Any,
    base: np.ndarray,
    queries: np.ndarray,
    k: int,
    alert_rate: float,
    mass: np.ndarray | None = None,
    space: FeatureRerank | None = None,
) -> np.ndarray:
    """Held-out scores as the scorer will compute them: approximate, and exact for every
    score at or above the threshold (``rescore_exact``). The threshold is not known until
    the scores are, so the top share is re-checked, widening until the threshold lies
    inside it; the decisions ``score >= threshold`` are then those of exact search.
    ``space``: the held-out rows in the feature space, as the scorer re-ranks (format 12)."""
    labels, dists = nearest_behaviours(index, queries, k, space)
    approx = knn_score(labels, dists, mass)
    share = min(1.0, 10 * alert_rate)
    # once, for every widening
    prepared = ExactBase.of(base) if space is None else space.exact()
    exact_queries = queries if space is None else space.queries
    while True:
        cutoff = float(np.quantile(approx, 1 - share))
        exact_labels, exact_dists = labels.copy(), dists.copy()
        rescore_exact(prepared, exact_queries, exact_labels, exact_dists, cutoff, mass=mass)
        mixed = knn_score(exact_labels, exact_dists, mass)
        threshold = threshold_for(mixed, alert_rate)
        if threshold >= cutoff or share >= 1.0:
            # what the scorer returns: exact where the approximate score reaches the
            # threshold, approximate below it (the golden events are checked on this)
            return np.asarray(np.where(approx >= threshold, mixed, approx))
        share = min(1.0, share * 2)


def _screen(emb: np.ndarray, params: IndexParams, q: float) -> tuple[np.ndarray, int]:
    """Indices to keep: drop the ``q`` share with the highest own k-NN score (the
    most isolated points: likely attacks mixed into the baseline)."""
    n = len(emb)
    n_drop = int(n * q)
    if n_drop == 0 or n <= params.k + 1:
        return np.arange(n), 0
    # Only a ranking is needed here, over every training event (the largest index the
    # build makes): a lighter graph than the serving index's, searched a little wider.
    screen = IndexParams(M=16, ef_construction=100, ef_search=max(64, params.k + 1), k=params.k)
    index = build_index(emb, screen)
    _, d = knn(index, emb, params.k + 1)
    own = d[:, 1:].mean(axis=1)  # the first neighbour is the point itself
    keep = np.sort(np.argsort(own, kind="stable")[: n - n_drop])
    return keep, n_drop


def _golden(
    class_uid: int,
    items: list[Parsed],
    scores: np.ndarray,
    threshold: float,
) -> list[GoldenEvent]:
    """Three held-out events: the lowest, median and highest scored."""
    if not items:
        return []
    order = np.argsort(scores, kind="stable")
    picks = sorted({int(order[0]), int(order[len(order) // 2]), int(order[-1])})
    return [
        GoldenEvent(
            class_uid=class_uid,
            event=items[i].event,
            score=round(float(scores[i]), 6),
            is_anomaly=bool(scores[i] >= threshold),
        )
        for i in picks
    ]
