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


def test_every_versioned_library_is_pinned_and_installed_at_its_pin() -> None:
    """What the table names is what `make install` gives: each library it depends on is
    pinned (the training extra, or the dependency layer's pins for the runtime ones),
    and the environment runs that pin."""
    import tomllib
    from importlib.metadata import version

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    lines = list(project["optional-dependencies"]["train"])
    lines += (root / "layers" / "dependencies" / "requirements.txt").read_text().splitlines()
    pins = {}
    for line in lines:
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, pinned = requirement.split("==")
            pins[name.strip().lower()] = pinned.strip()
    missing = [name for name in VERSIONED if name not in pins]
    assert not missing, f"not pinned: {missing}"
    differing = {
        name: (version(name), pins[name])
        for name in VERSIONED
        if version(name).split("+")[0] != pins[name]  # torch has a local tag: 2.13.0+cpu
    }
    assert not differing, f"installed, pinned: {differing}; run make install"
