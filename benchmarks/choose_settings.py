"""Leave-one-case-out for the score settings, on the model-free variant.

Eight settings of the score were chosen on the cases of ``evaluate_shared.py`` or on the
earlier tables of the same data: whether an isolation view is added to the k-NN distance
(``[isolation] enabled``), from which of its held-out quantiles it counts
(``[isolation] evidence_quantile``) and for which events (``[isolation] scope``: those
the baseline covers, or every event), from which quantile for the others
(``[isolation] uncovered_quantile``: where the trees alone would alert), how much an
indexed behaviour stands for in the k-NN score (``[index] mass_cap``: the distinct
``mass_bucket_minutes`` periods its baseline events occurred in, capped; 1 counts every
behaviour once), the weight of a categorical mismatch (``[train] category_weight``, x8),
whether fields whose mismatches go together share it
(``[train] share_redundant_categories``) and the number of neighbours averaged
(``[index] k``, 8). This reports those choices leave-one-case-out: for each case (all
its protocols, with the other cases of its dataset, which share its events), the variant
with the best worst-case margin over every *other* case is chosen (ROC-AUC and AP
margins together; ``--rule ap``: AP alone; a tie goes to the better second worst, and so
on: ``loco.py``), and its margins on the left out case are what the choice is worth
there. Each variant changes the default as its name says. It runs on the model-free
variant of the detector (``evaluation.weighted_knn_scores``: exact k-NN on the weighted
features with the build's index treatment and masses, the same trees, tails and sum),
which needs no training, so the choice is measured over three seeds in minutes; the
served score of the default is in ``evaluate_shared.py``'s table.

    python benchmarks/choose_settings.py [--seeds 0,1,2] [--out-dir .eval] [--rule both|ap] [--json]
        [--case-seed 0[,1,...]] [--variant LABEL ...]

``--case-seed`` draws the cases again (``evaluate_shared.py --case-seed``): the same
variants on cases none of them was chosen on. With several draws (``--case-seed 0,1,2``)
every draw's rows are in one table (a case named with its draw), and leave-one-case-out
leaves a case out of every draw at once: the draws share its events.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import CASE_SEED, load_cases, uid_of_line
from evaluate_shared import MIN_CLASS_EVENTS, Harness, build_code_digest, margin, ranking
from loco import RULE_TEXT, RULES, Margins, leave_one_case_out, times_chosen
from references import NAMES as REFERENCE_NAMES

from ocsf_detect_tools.config import DetectorConfig

VARIANTS = {
    "default (k 8, both views, trees for covered events, measured range)": {},
    # format 10: the trees add nothing for an event they do not judge
    "no uncovered floor": {"isolation": {"uncovered_quantile": 1.0}},
    # format 9: the exponential tail throughout, the trees for covered events only
    "exponential tails": {"isolation": {"measured_range": False, "uncovered_quantile": 1.0}},
    "k 16": {"index": {"k": 16}},
    "k 5": {"index": {"k": 5}},
    "trees for every event": {"isolation": {"scope": "all"}},
    "k 16, trees for every event": {"index": {"k": 16}, "isolation": {"scope": "all"}},
    "k-NN view alone": {"isolation": {"enabled": False}},
    "k-NN view alone, k 16": {"index": {"k": 16}, "isolation": {"enabled": False}},
    "both views, plain sum": {"isolation": {"evidence_quantile": 0.0}},
    # the trees add evidence only where they alone would alert (1 - the alert rate)
    "floor at the alert quantile": {"isolation": {"evidence_quantile": 0.995}},
    # the trees count for a covered event from their upper quartile, or their median
    "floor at the upper quartile": {"isolation": {"evidence_quantile": 0.75}},
    "floor at the median": {"isolation": {"evidence_quantile": 0.5}},
    "mass 2 per hour": {"index": {"mass_cap": 2}},
    "categories per field": {"train": {"share_redundant_categories": False}},
    "categories x4": {"train": {"category_weight": 4.0}},
}
METRICS = ("roc_auc", "average_precision")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=Path(".eval"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--rule",
        choices=sorted(RULES),
        default="both",
        help="which margins choose a variant: both metrics (default) or AP alone",
    )
    ap.add_argument(
        "--case-seed",
        default=str(CASE_SEED),
        help="draw the cases with this seed, or with each of several (comma-separated); "
        "default 0: the table the settings were chosen on",
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL",
        help="measure only this variant (repeatable; the default is always measured)",
    )
    args = ap.parse_args()
    unknown = [v for v in args.variant if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; one of {list(VARIANTS)}")
    variants = {
        label: update
        for i, (label, update) in enumerate(VARIANTS.items())
        if i == 0 or not args.variant or label in args.variant
    }
    seeds = [int(s) for s in args.seeds.split(",")]
    try:
        draws = [int(s) for s in args.case_seed.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--case-seed takes integers separated by commas, not {args.case_seed!r}")
    if not draws or len(set(draws)) != len(draws):
        ap.error(f"--case-seed takes distinct integers, not {args.case_seed!r}")
    evaluator = Harness(args.out_dir, build_code_digest())
    rows: list[dict[str, Any]] = []
    drawn = [(draw, case) for draw in draws for case in load_cases(case_seed=draw)]
    for draw, case in drawn:
        if case.benign_only or case.bundle_of:
            continue
        y = np.array([case.labels[uid_of_line(x)] for x in case.test], dtype=np.int64)
        refs = evaluator.references(case)
        best = {
            m: max(ranking(y, np.array(refs[n], dtype=float))[m] for n in REFERENCE_NAMES)
            for m in METRICS
        }
        for label, update in variants.items():
            config = DetectorConfig.model_validate({"min_class_events": MIN_CLASS_EVENTS, **update})
            runs = []
            for seed in seeds:
                w = evaluator.weighted(case, config, seed)
                runs.append(ranking(y, np.array([np.nan if v is None else v for v in w])))
            rows.append(
                {
                    "case": case.name if len(draws) == 1 else f"{case.name} (draw {draw})",
                    "case_seed": draw,
                    "group": case.group or case.name,
                    "protocol": case.protocol,
                    "variant": label,
                    **{f"{m}_min": min(r[m] for r in runs) for m in METRICS},
                    **{f"{m}_margin": margin(min(r[m] for r in runs), best[m]) for m in METRICS},
                }
            )
        print(f"{case.key} (draw {draw}): done", file=sys.stderr, flush=True)
    by = {(r["case"], r["protocol"], r["variant"]): r for r in rows}
    table = [
        Margins(
            r["case"],
            r["protocol"],
            r["variant"],
            {m: r[f"{m}_margin"] for m in METRICS},
            r["group"],
        )
        for r in rows
    ]
    choices = leave_one_case_out(table, list(variants), args.rule)
    loco = [{"chosen": c.chosen, **by[c.case, c.protocol, c.chosen]} for c in choices]
    if args.json:
        print(json.dumps({"case_seeds": draws, "rows": rows, "leave_one_case_out": loco}, indent=2))
        return
    print("| case | protocol | " + " | ".join(f"{v}: ROC-AUC / AP margin" for v in variants))
    print("|---|---|" + "---|" * len(variants))
    for case, protocol in sorted({(r["case"], r["protocol"]) for r in rows}):
        cells = [
            f"{by[case, protocol, v]['roc_auc_margin']:+.4f} / "
            f"{by[case, protocol, v]['average_precision_margin']:+.4f}"
            for v in variants
        ]
        print(f"| {case} | {protocol} | " + " | ".join(cells) + " |")
    print(
        f"\nLeave-one-case-out, chosen by {RULE_TEXT[args.rule]}; "
        f"times chosen: {times_chosen(choices)}\n"
    )
    print("| left-out case | protocol | chosen on the others | ROC-AUC margin | AP margin |")
    print("|---|---|---|---|---|")
    for r in loco:
        print(
            f"| {r['case']} | {r['protocol']} | {r['chosen']} | "
            f"{r['roc_auc_margin']:+.4f} | {r['average_precision_margin']:+.4f} |"
        )
    for m in METRICS:
        w = min(loco, key=lambda r: r[f"{m}_margin"])
        print(
            f"\nworst leave-one-case-out {m} margin: {w[f'{m}_margin']:+.4f} "
            f"({w['case']} {w['protocol']}, {w['chosen']})"
        )


if __name__ == "__main__":
    main()
