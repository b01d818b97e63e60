"""Why the faiss graph is built over centred vectors: recall@10 (after rescoring the graph's top 100
with the full vectors) of an HNSW graph over the first N passages' index vectors as they are, and
over the same vectors minus their mean, for the test split's questions, at each ef_search.

    python bench/centre_graph.py --data-dir /tmp/msmarco-bench/run_100000/data --n 250000

Reads the active index's files (its float16 vectors and numpy query encoder) and builds both graphs
in memory (M 16, ef_construction 100, as s05 does); writes nothing. A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--n", type=int, default=250_000, help="passages (the first N rows)")
    p.add_argument("--queries", type=int, default=300, help="test questions")
    p.add_argument("--ef-search", default="100,300,800")
    args = p.parse_args()
    import faiss
    import pyarrow.parquet as pq
    from common.corpus import load_vocab
    from common.query_encoder import NumpyQueryEncoder
    d = args.data_dir
    name = json.loads((d / "active_index.json").read_text())["name"]
    X = np.asarray(np.load(d / "indexes" / f"{name}.vectors.npy", mmap_mode="r")[:args.n], np.float32)
    vocab, _ = load_vocab(d)
    qs = [r["query"] for r in pq.read_table(d / "queries.parquet", columns=["split", "query"]).to_pylist()
          if r["split"] == "test"][:args.queries]
    Q, _ = NumpyQueryEncoder(d, name, vocab).encode(qs)
    exact = np.argsort(-(Q @ X.T), axis=1)[:, :10]
    m = X.mean(0)
    print(f"{len(X):,} passages, {len(Q)} questions; mean cosine of the passages to their mean "
          f"{float((X @ (m / np.linalg.norm(m))).mean()):.3f}")
    for label, Y in (("as they are", X), ("centred", X - m)):
        g = faiss.IndexHNSWFlat(X.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
        g.hnsw.efConstruction = 100
        t = time.time()
        g.add(np.ascontiguousarray(Y))
        built = time.time() - t
        for ef in (int(x) for x in args.ef_search.split(",")):
            g.hnsw.efSearch = ef
            t = time.time()
            _, I = g.search(Q, 100)
            ms = (time.time() - t) / len(Q) * 1000
            top = [r[np.argsort(-(X[r] @ q))[:10]] for r, q in zip(I, Q)]
            rec = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(top, exact)])
            print(f"{label:12s} built in {built:.0f} s  ef_search {ef:4d}: recall@10 {rec:.4f}  {ms:.2f} ms/question")


if __name__ == "__main__":
    main()
