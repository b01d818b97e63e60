"""s09's per-query latency, measured the way s09 answers a query: common.search.Searcher(data_dir,
mode=...).search(q, 10) on the CPU with one torch thread, over test-split queries.

    python bench/latency.py --data-dir /tmp/msmarco-bench/run_2000/data --queries 200 --modes dense,hybrid

Prints one JSON object: per mode, the Searcher's start-up seconds, the median / p95 / mean / max
milliseconds of .search(q, 10) end to end, and (dense) a breakdown of the same queries into
encode (tokenise + model) and the Chroma query with documents. Called by run_bench.py.
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--modes", default="dense,hybrid")
    p.add_argument("-k", type=int, default=10)
    args = p.parse_args()

    from common import cli  # noqa: F401  (environment settings for chromadb)
    import pyarrow.parquet as pq
    import torch
    torch.set_num_threads(1)  # as s09 does
    from common import vector_store
    from common.search import Searcher

    q = pq.read_table(args.data_dir / "queries.parquet", columns=["split", "query"]).to_pydict()
    texts = [t for s, t in zip(q["split"], q["query"]) if s == "test"][:args.queries + WARMUP]
    out = {"queries": len(texts) - WARMUP}
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        s = Searcher(args.data_dir, "cpu", mode=mode)
        start_s = time.perf_counter() - t0
        for t in texts[:WARMUP]:
            s.search(t, args.k)
        ms = []
        for t in texts[WARMUP:]:
            t1 = time.perf_counter()
            s.search(t, args.k)
            ms.append((time.perf_counter() - t1) * 1000)
        r = {"searcher_init_s": start_s, "search": summary(ms)}
        if mode == "dense":  # where the time goes: encode vs the Chroma query
            enc, chroma = [], []
            with_docs = s.active.get("store_text", True)
            for t in texts[WARMUP:]:
                t1 = time.perf_counter()
                v, _ = s.encode([s.check_query(t)])
                t2 = time.perf_counter()
                vector_store.search(s.col, v, args.k, with_docs=with_docs)
                t3 = time.perf_counter()
                enc.append((t2 - t1) * 1000)
                chroma.append((t3 - t2) * 1000)
            r["encode"] = summary(enc)
            r["chroma_query"] = summary(chroma)
        out[mode] = r
        del s
    print(json.dumps(out))


if __name__ == "__main__":
    main()
