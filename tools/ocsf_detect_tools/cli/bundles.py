"""``ocsf-detect bundles``: list the bundles published in the model registry bucket."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ocsf_detect_tools.cli import CommandError
from ocsf_detect_tools.registry import ModelRegistry, PublishedBundle, RegistryError


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "bundles",
        help="list bundles published in the registry",
        description="List the bundles published in a registry bucket, oldest first.",
    )
    parser.add_argument("--bucket", required=True, help="registry bucket")
    parser.add_argument("--prefix", default="", help="key prefix inside the bucket (default: none)")
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    parser.set_defaults(func=run)


def format_table(bundles: list[PublishedBundle]) -> str:
    """A fixed-width table: VERSION, CREATED, SIZE, OBJECT VERSION, MANIFEST SHA256 (the
    last two are what a staging or prod deploy pins)."""
    header = ("VERSION", "CREATED", "SIZE", "OBJECT VERSION", "MANIFEST SHA256")
    rows = [
        (
            b.bundle_version,
            b.created_at or "-",
            _human_size(b.size),
            b.object_version or "-",
            b.manifest_sha256 or "-",
        )
        for b in bundles
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def run(args: argparse.Namespace) -> int:
    try:
        bundles = ModelRegistry(args.bucket, args.prefix).list_bundles()
    except RegistryError as exc:
        raise CommandError(str(exc)) from exc
    if args.json:
        print(json.dumps([b.to_dict() for b in bundles], indent=2))
    elif not bundles:
        print(f"no bundles published in s3://{args.bucket}/{args.prefix.strip('/')}")
    else:
        print(format_table(bundles))
    return 0


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - unreachable
