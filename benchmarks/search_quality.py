"""How approximate search compares with exact search on a bundle's own index, per class.

For each class of the bundle present in ``--events``: the events are embedded with the
bundle's model; the index vectors are read back from the bundle's index; then for each
(M, ef_construction) pair an HNSW index is rebuilt from those vectors and queried at each
ef. Printed per setting: microseconds per query (one thread), recall@k, and the share of
events whose score (mean distance to the k nearest) exceeds the exact score by more than
1% (``score_errors``). The bundle's own index and ef are reported first. Example:

    python benchmarks/search_quality.py --bundle B --events live.jsonl.gz

Prints one JSON object. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ocsf_detect.detector.bundle import embedding_of, load_bundle
from ocsf_detect.detector.index import IndexParams, build_index, exact_knn, search_quality
from ocsf_detect.features.pipeline import FeaturePipeline
from ocsf_detect.ocsf import Parsed
from ocsf_detect.ocsf.parser import EventParser
from ocsf_detect_tools.eventio import read_lines


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _measure(index: Any, base: np.ndarray, queries: np.ndarray, k: int, exact: np.ndarray) -> dict:
    start = time.perf_counter()
    index.knn_query(queries, k=k, num_threads=1)
    us = (time.perf_counter() - start) / len(queries) * 1e6
    quality = search_quality(index, base, queries, k, exact)
    return {
        "us_per_query": round(us, 1),
        "recall": round(quality.recall, 4),
        "score_errors": round(quality.score_errors, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--events", type=Path, required=True, help=".jsonl or .jsonl.gz")
    ap.add_argument("--ef", default="16,32,64,128")
    ap.add_argument("--M", default="16,32")
    ap.add_argument("--ef-construction", default="200,400")
    args = ap.parse_args()
    manifest, loaded, _ = load_bundle(args.bundle)
    pipelines = {uid: FeaturePipeline(c.info.features) for uid, c in loaded.items()}
    parser = EventParser({uid: p.plan for uid, p in pipelines.items()})
    parsed = [p for p in parser.parse_many(read_lines(args.events)) if isinstance(p, Parsed)]
    result: dict[str, Any] = {"bundle_version": manifest.bundle_version, "classes": {}}
    for uid, cls in sorted(loaded.items()):
        items = [p for p in parsed if p.class_uid == uid]
        if not items:
            continue
        info = cls.info
        matrix = pipelines[uid].transform_parsed(items)
        queries = np.ascontiguousarray(
            embedding_of(cls.session, info, matrix.numeric, matrix.categorical)
        )
        n = cls.index.get_current_count()
        base = np.asarray(cls.index.get_items(list(range(n))), dtype=np.float32)
        k = min(info.index.k, n)
        _, exact = exact_knn(base, queries, k)
        own = _measure(cls.index, base, queries, k, exact)
        rows = []
        for m in _ints(args.M):
            for efc in _ints(args.ef_construction):
                index = build_index(base, IndexParams(M=m, ef_construction=efc, k=k))
                for ef in _ints(args.ef):
                    index.set_ef(max(ef, k))
                    rows.append(
                        {"M": m, "ef_construction": efc, "ef": ef}
                        | _measure(index, base, queries, k, exact)
                    )
        result["classes"][str(uid)] = {
            "events": len(items),
            "index_vectors": n,
            "bundle_index": {
                "M": info.index.M,
                "ef_construction": info.index.ef_construction,
                "ef": info.index.ef_search,
            }
            | own,
            "settings": rows,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
