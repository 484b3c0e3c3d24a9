"""ocsf-detect train --events FILE... --out DIR [--config FILE] [--alert-rate R]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ocsf_detect_tools.cli import CommandError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("train", help="train a bundle from baseline events")
    p.add_argument(
        "--events",
        nargs="+",
        required=True,
        type=Path,
        help="baseline events (.jsonl or .jsonl.gz), assumed mostly normal",
    )
    p.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    p.add_argument("--config", type=Path, help="TOML configuration (features, model, index)")
    p.add_argument("--alert-rate", type=float, help="target alert rate on normal traffic")
    p.add_argument("--archive", type=Path, help="also write the bundle archive (.zip) here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ocsf_detect.detector.archive import write_archive
    from ocsf_detect_tools.build import BuildError, build_bundle, out_dir_problem
    from ocsf_detect_tools.cli import one_line
    from ocsf_detect_tools.config import ConfigError, load_config
    from ocsf_detect_tools.eventio import read_lines

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
    try:
        manifest = build_bundle(
            lines,
            args.out,
            config,
            sources=[str(p) for p in args.events],
            log=lambda m: print(m, file=sys.stderr),
        )
    except BuildError as exc:
        raise CommandError(str(exc)) from exc
    if args.archive:
        write_archive(args.out, args.archive)
    print(f"bundle {manifest.bundle_version} written to {args.out}")
    for m in manifest.models.values():
        print(
            f"  class {m.class_uid} {m.class_name}: {m.training.events:,} events, "
            f"threshold {m.threshold:.4f}, recall@{m.index.k} {m.index.recall_at_k:.3f}"
        )
    return 0
