"""Stage 1: (query, positive, random negative) triplets for every split.

Positives: is_selected = 1 only. Negatives: random pool passages outside the query's own
candidate list. Queries without a selected passage give no triplet (their passages stay indexed).

    python s01_create_triplets.py
    # -> wrote data/triplets.parquet (train 5,191 / validation 1,035 / test 965 triplets)
"""
import collections

import pyarrow.parquet as pq

from common import cli
from common.artifacts import atomic_path, require, run_main, write_manifest
from common.triplets import random_triplets


def main():
    p = cli.parser(__doc__)
    p.add_argument("--seed", type=cli.nonneg_int, default=0)
    p.add_argument("--negs-per-pos", type=cli.positive_int, default=1)
    args = p.parse_args()
    t = cli.Timer()
    d = args.data_dir
    qm = require(d / "queries.parquet")
    pm = require(d / "passages.parquet")
    queries = pq.read_table(d / "queries.parquet", columns=["split", "query_id", "passage_ids", "is_selected"])
    pool = pq.read_table(d / "passages.parquet", columns=["passage_id"])["passage_id"].to_numpy()
    trip = random_triplets(queries, pool, seed=args.seed, negs_per_pos=args.negs_per_pos)
    out = d / "triplets.parquet"
    with atomic_path(out) as tmp:
        pq.write_table(trip, tmp)
    per = dict(collections.Counter(trip["split"].to_pylist()))
    write_manifest(out, "s01_create_triplets.py", vars(args) | {"data_dir": str(d)},
                   inputs={"queries": qm, "passages": pm}, stats={"triplets_per_split": per})
    cli.done(f"{out} (" + " / ".join(f"{k} {v:,}" for k, v in per.items()) + " triplets)", t)


if __name__ == "__main__":
    run_main(main)
