"""The plain references, fitted on a case's training events: IsolationForest (200 trees,
seed 0) and exact mean k-NN (k = 5 and 20) on the plain features, exactly as the shared
``plain_references.py`` computes them (its feature function is imported, not copied:
``OCSF_DETECT_REFERENCES`` or ``../shared/references/plain_references.py``).

One change, for the contaminated protocol (training events = scored events): an event is
not its own neighbour (sklearn's ``kneighbors()`` without a query leaves the point itself
out); IsolationForest is fitted on all events and scores all of them.
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import orjson

KS = (5, 20)
NAMES = ("isolation_forest", *(f"knn_{k}" for k in KS))


@cache
def plain_module() -> ModuleType:
    path = Path(
        os.environ.get("OCSF_DETECT_REFERENCES", "../shared/references/plain_references.py")
    )
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the plain references are needed (set OCSF_DETECT_REFERENCES)"
        )
    spec = importlib.util.spec_from_file_location("plain_references", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_code() -> bytes:
    """What the reference scores depend on, for cache keys."""
    path = Path(plain_module().__file__ or "")
    return path.read_bytes() + Path(__file__).read_bytes()


def plain_scores(train: list[bytes], test: list[bytes], same: bool) -> dict[str, np.ndarray]:
    """Scores of ``test`` (higher = more anomalous) per reference. ``same``: ``test`` is
    ``train`` (contaminated protocol): k-NN leaves each event out of its own neighbours."""
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rows = plain_module().rows
    train_events = [orjson.loads(x) for x in train]
    ntr, ctr = rows(train_events)
    if same:
        nte, cte = ntr, ctr
    else:
        nte, cte = rows([orjson.loads(x) for x in test])
    # as plain_references.main: the common numeric width, scaler and encoder fitted on train
    w = min(ntr.shape[1], nte.shape[1])
    sc = StandardScaler().fit(ntr[:, :w])
    oh = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(ctr)
    xtr = np.hstack([sc.transform(ntr[:, :w]), oh.transform(ctr)])
    xte = xtr if same else np.hstack([sc.transform(nte[:, :w]), oh.transform(cte)])
    out = {}
    iso = IsolationForest(n_estimators=200, random_state=0).fit(xtr)
    out["isolation_forest"] = -iso.score_samples(xte)
    for k in KS:
        nn = NearestNeighbors(n_neighbors=min(k, len(xtr) - int(same))).fit(xtr)
        d, _ = nn.kneighbors() if same else nn.kneighbors(xte)
        out[f"knn_{k}"] = d.mean(1)
    return out
