"""(query, positive, negative) triplets.

Positives are the passages MS MARCO marks is_selected = 1, and nothing else. A random negative is
drawn from the whole pool but never from the query's own candidate list (those are Bing's top
results for it: often relevant, just not the one the annotator picked) and never equals a positive.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

TRIPLET_SCHEMA = pa.schema([("split", pa.string()), ("query_id", pa.int64()),
                            ("pos_id", pa.int64()), ("neg_id", pa.int64())])


def positives(passage_ids, is_selected) -> list[int]:
    return [int(p) for p, s in zip(passage_ids, is_selected) if s == 1]


def random_triplets(queries: pa.Table, pool_ids: np.ndarray, seed: int = 0, negs_per_pos: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    out = {k: [] for k in TRIPLET_SCHEMA.names}
    cols = queries.select(["split", "query_id", "passage_ids", "is_selected"]).to_pydict()
    n_pool = len(pool_ids)
    for split, qid, pids, sel in zip(cols["split"], cols["query_id"], cols["passage_ids"], cols["is_selected"]):
        pos = positives(pids, sel)
        if not pos:
            continue  # no training pair, but its passages stay in the index
        own = set(pids)
        if len(own) >= n_pool:
            continue
        for p in pos:
            for _ in range(negs_per_pos):
                while True:
                    n = int(pool_ids[rng.integers(n_pool)])
                    if n not in own:
                        break
                out["split"].append(split)
                out["query_id"].append(qid)
                out["pos_id"].append(p)
                out["neg_id"].append(n)
    return pa.table(out, schema=TRIPLET_SCHEMA)
