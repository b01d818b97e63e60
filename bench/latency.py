"""s09's per-query latency, measured the way s09 answers a query: common.search.Searcher(data_dir,
mode=...).search(q, 10) on the CPU (numpy query encoder, or torch with one thread for a GRU model),
over test-split queries.

    python bench/latency.py --data-dir DATA --queries 200 --modes dense,hybrid
    python bench/latency.py --data-dir DATA --modes dense --settle 90   # after the warm-up's read-ahead

Prints one JSON object: per mode, the Searcher's start-up seconds, the median / p95 / mean / max
milliseconds of .search(q, 10) end to end, and (dense) a breakdown of the same queries into
encode (tokenise + model), BM25's top rows, and the index search (the graph + rescoring of its
candidates and BM25's rows with the full vectors), and
the index's recall@10 against exact search over all the full vectors, as s09's own Searcher answers
(bench/index_recall.py measures the graph alone, from its files, at other ef_search values).
Called by run_bench.py.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WARMUP = 5


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def summary(ms):
    return {"n": len(ms), "median_ms": statistics.median(ms), "p95_ms": pct(ms, 0.95),
            "mean_ms": statistics.fmean(ms), "max_ms": max(ms)}


def index_recall(s, texts, k: int) -> float:
    """Top-k overlap of the index's answers (graph + rescoring) with exact search over every full
    vector, the vectors the index itself stores (float16), in chunks so memory stays small."""
    import numpy as np
    from common.retrieval import lexical_rows
    q, _ = s.encode([s.check_query(t) for t in texts])
    extra = lexical_rows(s._need_bm25(), texts, k)  # as Searcher.search's dense mode
    got = s.index.search(q, k, extra=extra)[0]  # rows
    full = s.index.full
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_r = np.zeros((len(q), k), np.int64)
    for lo in range(0, full.vecs.shape[0], 100_000):
        sc = q @ np.asarray(full.vecs[lo:lo + 100_000], np.float32).T
        cat_s = np.concatenate([best_s, sc], 1)
        cat_r = np.concatenate([best_r, np.arange(lo, lo + sc.shape[1])[None, :].repeat(len(q), 0)], 1)
        top = np.argpartition(-cat_s, k - 1, axis=1)[:, :k]
        best_s, best_r = np.take_along_axis(cat_s, top, 1), np.take_along_axis(cat_r, top, 1)
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(got, best_r)]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--modes", default="dense,hybrid")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--settle", type=float, default=0.0,
                   help="seconds to wait after the Searcher starts, before the first question (for the page cache to "
                        "fill from the warm-up's read-ahead, as it does for a server that is queried later)")
    args = p.parse_args()

    from common import cli  # noqa: F401  (environment settings for chromadb)
    import pyarrow.parquet as pq
    from common.search import Searcher

    q = pq.read_table(args.data_dir / "queries.parquet", columns=["split", "query"]).to_pydict()
    texts = [t for s, t in zip(q["split"], q["query"]) if s == "test"][:args.queries + WARMUP]
    out = {"queries": len(texts) - WARMUP}
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        s = Searcher(args.data_dir, "cpu", mode=mode)
        start_s = time.perf_counter() - t0
        time.sleep(args.settle)
        for t in texts[:WARMUP]:
            s.search(t, args.k)
        ms = []
        for t in texts[WARMUP:]:
            t1 = time.perf_counter()
            s.search(t, args.k)
            ms.append((time.perf_counter() - t1) * 1000)
        r = {"searcher_init_s": start_s, "search": summary(ms), "encoder": s.encoder}
        if mode == "dense":  # where the time goes: encode, BM25's rows, the index search (graph + rescoring)
            from common.retrieval import lexical_rows
            enc, lex, search = [], [], []
            for t in texts[WARMUP:]:
                t1 = time.perf_counter()
                v, _ = s.encode([s.check_query(t)])
                t2 = time.perf_counter()
                extra = lexical_rows(s.bm25, [t], args.k)
                t3 = time.perf_counter()
                s.index.search(v, args.k, extra=extra)
                t4 = time.perf_counter()
                enc.append((t2 - t1) * 1000)
                lex.append((t3 - t2) * 1000)
                search.append((t4 - t3) * 1000)
            r["encode"] = summary(enc)
            r["bm25_rows"] = summary(lex)
            r["index_search"] = summary(search)
            r["index_recall_at_10"] = index_recall(s, texts[WARMUP:], args.k)
        out[mode] = r
        del s
    print(json.dumps(out))


if __name__ == "__main__":
    main()
