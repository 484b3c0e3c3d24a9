"""``ocsf-detect generate``: write labeled synthetic OCSF traffic as JSONL plus a labels CSV.

    ocsf-detect generate --out live.jsonl.gz --events 20000 --seed 7
    ocsf-detect generate --out baseline.jsonl.gz --seed 1 --no-attacks

The labels go to ``<out stem>.labels.csv`` next to ``--out`` unless ``--labels`` says
otherwise. The same arguments always write byte-identical files.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from ocsf_detect_tools.cli import CommandError
from ocsf_detect_tools.simulate import generate_traffic, write_jsonl, write_labels_csv

DEFAULT_EVENTS = 20_000
DEFAULT_SEED = 7
_EVENT_SUFFIXES = (".jsonl.gz", ".jsonl", ".json.gz", ".json", ".gz")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate labeled synthetic OCSF traffic",
        description=(
            "Generate deterministic synthetic OCSF events of one simulated organisation, "
            "with labeled attacks: Network Activity, DNS Activity and Authentication, and "
            "(unless --sources network) HTTP Activity, Process Activity, File System "
            "Activity, Account Change and API Activity from its web, endpoint, identity and "
            "cloud sources."
        ),
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="events file (.jsonl, or .jsonl.gz to compress)"
    )
    parser.add_argument(
        "--events",
        type=int,
        default=DEFAULT_EVENTS,
        metavar="N",
        help=f"number of events (default {DEFAULT_EVENTS})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        metavar="S",
        help=f"traffic seed; the organisation stays the same (default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        default=None,
        metavar="FILE",
        help="labels CSV (default: <out stem>.labels.csv next to --out)",
    )
    parser.add_argument(
        "--sources",
        choices=("all", "network"),
        default="all",
        help="all (default): network, DNS, authentication, web, endpoint and identity "
        "sources; network: the first three only, as before those sources existed",
    )
    parser.add_argument(
        "--no-attacks",
        action="store_true",
        help="benign traffic only, e.g. a training baseline",
    )
    parser.set_defaults(func=run)


def default_labels_path(out: Path) -> Path:
    """``dir/x.jsonl.gz`` -> ``dir/x.labels.csv`` (also for .jsonl, .json and .gz)."""
    name = out.name
    for suffix in _EVENT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return out.with_name(name[: -len(suffix)] + ".labels.csv")
    return out.with_name(out.stem + ".labels.csv")


def run(args: argparse.Namespace) -> int:
    if args.events < 0:
        raise CommandError(f"--events must be 0 or more, got {args.events}")
    out: Path = args.out
    labels_path: Path = args.labels or default_labels_path(out)
    if labels_path.resolve() == out.resolve():
        raise CommandError(f"--labels and --out are the same file ({out}); pick another name")

    traffic = generate_traffic(
        args.events,
        seed=args.seed,
        attacks=not args.no_attacks,
        endpoint=args.sources == "all",
    )
    try:
        written = write_jsonl(traffic.events, out)
        write_labels_csv(traffic.labels, labels_path)
    except OSError as exc:
        raise CommandError(f"cannot write {exc.filename or out}: {exc.strerror}") from exc

    by_class = Counter(event["class_name"] for event in traffic.events)
    attacks = traffic.attack_counts()
    malicious = sum(attacks.values())
    classes = ", ".join(f"{name} {count}" for name, count in sorted(by_class.items()))
    attack_text = ", ".join(f"{kind} {count}" for kind, count in attacks.items()) or "none"
    print(
        f"wrote {written} events (benign {written - malicious}, malicious {malicious}; "
        f"{classes}; attacks: {attack_text}) to {out}, labels to {labels_path}"
    )
    return 0
