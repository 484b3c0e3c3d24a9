"""ocsf-detect train --events FILE... --out DIR [--config FILE] [--alert-rate R]"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocsf_detect_tools.cli import (
    CommandError,
    add_max_rejected,
    rejected_status,
    too_many_rejected,
)

if TYPE_CHECKING:
    from ocsf_detect.detector.manifest import Manifest

DESCRIPTION = """\
Train a bundle from baseline OCSF events (assumed mostly normal): per supported class,
fit the features, train the embedding network (bounded by [train] max_steps and
max_minutes), build the k-NN index and calibrate the threshold to the alert rate. The
bundle is built beside --out and moved into place when complete."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "train", help="train a bundle from baseline events", description=DESCRIPTION
    )
    p.add_argument(
        "--events",
        nargs="+",
        required=True,
        type=Path,
        help="baseline events (.jsonl, .jsonl.gz or - for stdin), assumed mostly normal",
    )
    p.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    p.add_argument("--config", type=Path, help="TOML configuration (features, model, index)")
    p.add_argument("--alert-rate", type=float, help="target alert rate on normal traffic")
    p.add_argument("--archive", type=Path, help="also write the bundle archive (.zip) here")
    p.add_argument(
        "--feedback",
        metavar="SOURCE",
        help="analysts' verdicts (s3://FEEDBACK_BUCKET, a directory of verdict .json files or "
        "a .jsonl file): the events judged benign join the baseline",
    )
    add_max_rejected(p)
    p.set_defaults(func=run)


def _benign_events(source: str) -> list[bytes]:
    from ocsf_detect_tools.verdicts import VerdictSourceError, benign_lines, read_verdicts

    try:
        verdicts = read_verdicts(source)
    except VerdictSourceError as exc:
        raise CommandError(f"--feedback {exc}") from exc
    lines = benign_lines(verdicts)
    print(
        f"--feedback: {len(lines):,} events judged benign join the baseline "
        f"({len(verdicts) - len(lines):,} malicious verdicts left out)",
        file=sys.stderr,
    )
    return lines


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ocsf_detect.detector.archive import write_archive
    from ocsf_detect.ocsf.classes import class_name
    from ocsf_detect_tools.build import BuildError, build_bundle, out_dir_problem
    from ocsf_detect_tools.cli import one_line
    from ocsf_detect_tools.cli.progress import TrainingProgress
    from ocsf_detect_tools.config import ConfigError, load_config
    from ocsf_detect_tools.eventio import atomic_path, read_lines
    from ocsf_detect_tools.training.fit import observe_training

    try:
        config = load_config(args.config)
        if args.alert_rate is not None:
            config = config.model_validate({**config.model_dump(), "alert_rate": args.alert_rate})
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    except ValidationError as exc:
        raise CommandError(f"--alert-rate {args.alert_rate}: {one_line(exc)}") from exc
    if args.archive is not None and Path(args.archive).is_dir():
        raise CommandError(f"--archive {args.archive} is a directory; give a .zip file path")
    problem = out_dir_problem(Path(args.out))  # now, not after reading and training
    if problem:
        raise CommandError(problem)
    lines: list[bytes] = []
    for path in args.events:
        lines += read_lines(path)
    print(f"read {len(lines):,} events from {len(args.events)} file(s)", file=sys.stderr)
    sources = [str(p) for p in args.events]
    if args.feedback:
        lines += _benign_events(args.feedback)
        sources.append(args.feedback)
    started = time.perf_counter()
    progress = TrainingProgress(config.train.max_minutes * 60)

    def log(message: str) -> None:
        progress.end_line()
        if message.startswith("class "):  # "class 4001 (Network Activity): 1,234 events"
            progress.label = message.split(":", 1)[0]
        print(message, file=sys.stderr, flush=True)

    def accept(built: Manifest) -> bool:
        """A run that will exit 3 (too many lines rejected) leaves --out as it was."""
        return not too_many_rejected(built.training.rejected, len(lines), args.max_rejected)

    try:
        with observe_training(progress):
            manifest = build_bundle(
                lines, args.out, config, sources=sources, log=log, accept=accept
            )
    except BuildError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        progress.end_line()
    print(
        f"trained in {time.perf_counter() - started:.1f} s "
        f"({len(lines) / max(time.perf_counter() - started, 1e-9):,.0f} events/s)",
        file=sys.stderr,
    )
    if not accept(manifest):
        print(f"bundle {manifest.bundle_version} not written: {args.out} is as it was")
        return rejected_status(
            manifest.training.rejected, len(lines), args.max_rejected, " ".join(sources)
        )
    if args.archive:
        with atomic_path(args.archive) as partial:
            write_archive(args.out, partial)
    print(f"bundle {manifest.bundle_version} written to {args.out}")
    for m in manifest.models.values():
        print(
            f"  class {m.class_uid} {m.class_name}: {m.training.events:,} events, "
            f"threshold {m.threshold:.4f}, recall@{m.index.k} {m.index.recall_at_k:.3f}, "
            f"{m.spec_origin} spec"
        )
    for uid, small in sorted(manifest.training.unmodelled.items(), key=lambda kv: int(kv[0])):
        print(
            f"  class {uid} {class_name(int(uid))}: unsupported, {small.reason.value} "
            f"({small.baseline_events:,} baseline events, a model needs {small.minimum:,})"
        )
    return rejected_status(
        manifest.training.rejected, len(lines), args.max_rejected, " ".join(sources)
    )
