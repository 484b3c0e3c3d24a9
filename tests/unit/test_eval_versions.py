"""The evaluation names the library versions its numbers depend on
(benchmarks/evaluate_shared.py): a table rebuilt under other versions can differ."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from evaluate_shared import VERSIONED, library_versions


def test_the_versions_are_the_installed_ones() -> None:
    found = library_versions()
    assert set(found) == {"python", *VERSIONED}
    assert found["python"] == sys.version.split()[0]
    assert found["numpy"] == np.__version__
    assert "absent" not in (found["numpy"], found["scikit-learn"])
