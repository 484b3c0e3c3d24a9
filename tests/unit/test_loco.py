"""Leave-one-case-out choice of a setting (benchmarks/loco.py) on small margin tables."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from loco import Margins, leave_one_case_out, leximin_key, times_chosen


def table(margins: dict[tuple[str, str], tuple[float, float]]) -> list[Margins]:
    """(case, setting) -> (ROC-AUC margin, AP margin), one protocol per case."""
    return [
        Margins(case, "future", setting, {"roc_auc": roc, "average_precision": ap})
        for (case, setting), (roc, ap) in margins.items()
    ]


def test_the_left_out_case_does_not_vote_for_its_own_setting() -> None:
    # "wide" is far better on case a only; "steady" is better everywhere else.
    rows = table(
        {
            ("a", "steady"): (0.0, -0.30),
            ("a", "wide"): (0.0, +0.20),
            ("b", "steady"): (0.0, +0.01),
            ("b", "wide"): (0.0, -0.05),
            ("c", "steady"): (0.0, +0.02),
            ("c", "wide"): (0.0, -0.04),
        }
    )
    chosen = {c.case: c.chosen for c in leave_one_case_out(rows, ["steady", "wide"])}
    # a is left out: only b and c vote, and they prefer steady, whose margin on a is
    # what the choice is worth there
    assert chosen["a"] == "steady"
    # b left out: "steady" has -0.30 on a, "wide" -0.04 at worst on a and c
    assert chosen["b"] == "wide"
    a_row = next(c for c in leave_one_case_out(rows, ["steady", "wide"]) if c.case == "a")
    assert a_row.margin["average_precision"] == pytest.approx(-0.30)
    assert a_row.worst_elsewhere == pytest.approx(0.0)  # steady's ROC-AUC margins


def test_both_metrics_count_under_the_default_rule() -> None:
    # "ap-only" wins on AP by a little and loses ROC-AUC by a lot
    rows = table(
        {
            ("a", "floor"): (-0.01, -0.10),
            ("a", "ap-only"): (-0.20, -0.09),
            ("b", "floor"): (0.00, 0.00),
            ("b", "ap-only"): (0.00, 0.00),
        }
    )
    both = {c.case: c.chosen for c in leave_one_case_out(rows, ["floor", "ap-only"])}
    ap = {c.case: c.chosen for c in leave_one_case_out(rows, ["floor", "ap-only"], "ap")}
    assert both["b"] == "floor"  # chosen on a: worst margin -0.10 against -0.20
    assert ap["b"] == "ap-only"  # chosen on a's AP alone: -0.09 against -0.10
    assert leximin_key(rows, "floor", "b", "both") == [-0.10, -0.01]


def test_a_tie_goes_to_the_next_worst_then_to_the_first_listed() -> None:
    rows = table(
        {
            ("a", "x"): (0.0, 0.0),
            ("a", "y"): (0.0, 0.0),
            ("b", "x"): (-0.1, 0.00),
            ("b", "y"): (-0.1, 0.05),
            ("c", "x"): (0.0, 0.0),
            ("c", "y"): (0.0, 0.0),
        }
    )
    chosen = {c.case: c.chosen for c in leave_one_case_out(rows, ["x", "y"])}
    assert chosen["a"] == "y"  # same worst (-0.1), y's next margins are larger
    assert chosen["b"] == "x"  # a and c alone: every margin equal, the first listed
    assert times_chosen(leave_one_case_out(rows, ["x", "y"])) == {"y": 2, "x": 1}


def test_every_row_of_the_left_out_case_is_reported_and_a_bad_rule_is_refused() -> None:
    rows = [
        *table({("a", "x"): (0.0, 0.0), ("b", "x"): (0.1, 0.2)}),
        Margins("b", "contaminated", "x", {"roc_auc": -0.1, "average_precision": -0.2}),
    ]
    b_rows = [c for c in leave_one_case_out(rows, ["x"]) if c.case == "b"]
    assert sorted(c.protocol for c in b_rows) == ["contaminated", "future"]
    with pytest.raises(ValueError, match="unknown rule"):
        leave_one_case_out(rows, ["x"], "roc")


def test_a_setting_missing_a_row_is_not_judged_on_fewer_margins() -> None:
    # "partial" has no row for case c, where "whole" is far behind; on a and b they tie
    rows = table(
        {
            ("a", "whole"): (0.0, 0.0),
            ("a", "partial"): (0.0, 0.0),
            ("b", "whole"): (0.0, 0.0),
            ("b", "partial"): (0.0, 0.0),
            ("c", "whole"): (0.0, -0.5),
        }
    )
    choices = leave_one_case_out(rows, ["whole", "partial"])
    # Then only the rows both have count: case c is not reported, and on a and b the two
    # tie, so the first listed is chosen, not "partial" for lacking c's margin
    assert sorted({c.case for c in choices}) == ["a", "b"]
    assert {c.chosen for c in choices} == {"whole"}


def test_a_case_and_its_full_size_rows_are_left_out_together() -> None:
    # "big" wins everywhere but on case a; a-full is case a's data at full size. Left
    # out alone, a would still be chosen for by its own full-size row.
    rows = [
        Margins("a", "future", "small", {"roc_auc": 0.0, "average_precision": +0.05}),
        Margins("a", "future", "big", {"roc_auc": 0.0, "average_precision": -0.30}),
        Margins("a-full", "future", "small", {"roc_auc": 0.0, "average_precision": +0.04}, "a"),
        Margins("a-full", "future", "big", {"roc_auc": 0.0, "average_precision": -0.25}, "a"),
        Margins("b", "future", "small", {"roc_auc": 0.0, "average_precision": -0.02}),
        Margins("b", "future", "big", {"roc_auc": 0.0, "average_precision": +0.03}),
    ]
    choices = leave_one_case_out(rows, ["small", "big"])
    left_a = [c for c in choices if c.group == "a"]
    # both of a's rows are reported, chosen on b alone, which prefers "big"
    assert {c.case for c in left_a} == {"a", "a-full"}
    assert {c.chosen for c in left_a} == {"big"}
    assert [c.margin["average_precision"] for c in left_a] == [-0.30, -0.25]
    # b left out: a and a-full vote, and they prefer "small"
    assert [c.chosen for c in choices if c.case == "b"] == ["small"]
    # a case counts once, with its full-size rows
    assert times_chosen(choices) == {"big": 1, "small": 1}
    # without the group, a-full is a case of its own and votes for "small" when a is left out
    ungrouped = [Margins(r.case, r.protocol, r.setting, r.margin) for r in rows]
    assert [c.chosen for c in leave_one_case_out(ungrouped, ["small", "big"]) if c.case == "a"] == [
        "small"
    ]
