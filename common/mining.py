"""Hard-negative mining.

The trained model ranks the pool for each training query (through its index). Its very top ranks
are where false negatives crowd: MS MARCO marks one relevant passage per query, and the passages
ranked right beside it are often relevant too. Training to push those away is what made the
original design's hard-negative round worse. So negatives come from a window of ranks below the
top (`skip` to `depth`), never a passage selected for the query, never its own (unlabelled)
candidates, and never one scoring almost as high as the query's positive.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from .triplets import TRIPLET_SCHEMA


def mine(qids, positives: list[set], candidates: list[set], ranked_ids: list[list[int]],
         ranked_scores: list[list[float]], pos_scores: np.ndarray, skip: int, depth: int,
         per_query: int, margin: float, seed: int = 0) -> tuple[pa.Table, dict]:
    """positives/candidates: per query; ranked_*: the model's top `depth` for each query. seed: an
    int, or a numpy Generator carried from one batch of queries to the next (the same draws as one
    call over all of them)."""
    rng = np.random.default_rng(seed)
    out = {k: [] for k in TRIPLET_SCHEMA.names}
    stats = {"queries": 0, "dropped_as_possible_false_negative": 0, "no_negative_found": 0}
    for q, pos, cand, ids, sc, ps in zip(qids, positives, candidates, ranked_ids, ranked_scores, pos_scores):
        window = []
        for r, (pid, s) in enumerate(zip(ids[:depth], sc[:depth])):
            if pid in pos or pid in cand:
                continue
            if r < skip:
                continue
            if s > ps - margin:  # about as close as the positive: likely relevant, unlabelled
                stats["dropped_as_possible_false_negative"] += 1
                continue
            window.append(pid)
        if not window:
            stats["no_negative_found"] += 1
            continue
        stats["queries"] += 1
        take = rng.choice(len(window), size=min(per_query, len(window)), replace=False)
        for p in sorted(pos):
            for t in take:
                out["split"].append("train")
                out["query_id"].append(int(q))
                out["pos_id"].append(int(p))
                out["neg_id"].append(int(window[t]))
    return pa.table(out, schema=TRIPLET_SCHEMA), stats
