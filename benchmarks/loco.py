"""Leave-one-case-out: how a setting chosen on the evaluation's cases is reported.

For each case (all its protocols, with every case of its dataset: ``Margins.group``,
left out together, since they share events), the setting is chosen on every *other*
case, and its margins on the left-out case are what the choice is worth there. A setting
is chosen by its margins over the best plain reference, worst first (leximin): the
largest worst margin wins, a tie goes to the larger second worst, and so on. Which
margins count is the rule:

- ``both`` (the default): the ROC-AUC and AP margins of every other row together, so a
  setting cannot win on AP while it falls further behind on ROC-AUC. The issue asks for
  both metrics at or above the best reference on every row;
- ``ap``: the AP margins alone, the rule of the earlier tables.

Both ``evaluate_shared.py`` (served configs) and ``choose_settings.py`` (model-free
variants) use it. Pure: rows in, choices out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

RULES: dict[str, tuple[str, ...]] = {
    "both": ("roc_auc", "average_precision"),
    "ap": ("average_precision",),
}
RULE_TEXT = {"both": "ROC-AUC and AP margins together", "ap": "AP margins alone"}


@dataclass(frozen=True)
class Margins:
    """One row of one setting: its worst-seed margins over the best reference."""

    case: str
    protocol: str
    setting: str
    margin: Mapping[str, float]  # metric -> margin
    # the group it is left out with ("": its own); the cases of one dataset share events
    # (cases.assign_groups), so none may vote for another's setting
    group: str = ""

    @property
    def unit(self) -> str:
        return self.group or self.case


@dataclass(frozen=True)
class Choice:
    """The setting chosen without ``case``, and its margins on one of the case's rows."""

    case: str
    protocol: str
    chosen: str
    worst_elsewhere: float  # the chosen setting's worst counted margin on the other cases
    margin: Mapping[str, float]
    group: str = ""  # what was left out with it (Margins.unit)


def leximin_key(rows: Sequence[Margins], setting: str, left: str, rule: str) -> list[float]:
    """The margins ``rule`` counts for ``setting`` on every case but ``left`` (and the
    rows left out with it), worst first."""
    metrics = RULES[rule]
    return sorted(
        r.margin[m] for r in rows if r.setting == setting and r.unit != left for m in metrics
    )


def leave_one_case_out(
    rows: Sequence[Margins], settings: Sequence[str], rule: str = "both"
) -> list[Choice]:
    """For every case, the setting chosen on the others (``settings`` order breaks an
    exact tie: the first listed wins), with its margins on each of the case's rows."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; one of {sorted(RULES)}")
    rows = common_rows(rows, settings)
    out: list[Choice] = []
    for left in sorted({r.unit for r in rows}):
        keys = {s: leximin_key(rows, s, left, rule) for s in settings}
        chosen = max(settings, key=lambda s: keys[s])  # max keeps the first of equals
        out += [
            Choice(
                r.case,
                r.protocol,
                chosen,
                keys[chosen][0] if keys[chosen] else float("nan"),
                r.margin,
                r.unit,
            )
            for r in rows
            if r.setting == chosen and r.unit == left
        ]
    return out


def common_rows(rows: Sequence[Margins], settings: Sequence[str]) -> list[Margins]:
    """The rows of the (case, protocol) pairs every setting has: a setting missing a row
    (a partial run) would otherwise be judged on fewer margins, and win by its absence."""
    held = [{(r.case, r.protocol) for r in rows if r.setting == s} for s in settings]
    shared = set.intersection(*held) if held else set()
    return [r for r in rows if (r.case, r.protocol) in shared and r.setting in settings]


def times_chosen(choices: Sequence[Choice]) -> dict[str, int]:
    """How many left-out groups chose each setting (a group counted once, not per row)."""
    return dict(Counter({c.group or c.case: c.chosen for c in choices}.values()))
