"""How each kind of faiss graph does on the same vectors: recall@10 (after rescoring the graph's top
100 with the full vectors, as s09 does) for the test split's questions, search time per question,
build rate and size, of HNSW graphs over the first N passages' index vectors:

    raw      float32 vectors as they are (IndexHNSWFlat)
    flat     float32, minus their mean: the centred graph s05 builds below 2,000,000 passages
    sq8      8-bit scalar-quantised codes of the centred vectors (IndexHNSWSQ), ranges trained on
             20,000 evenly spaced passages: what s05 builds from 2,000,000 passages
    cos      the centred vectors scaled to unit length, in an L2 graph: it proposes candidates by
             cosine to the question instead of inner product (a true metric, where HNSW's greedy
             search does better); the rescoring restores the inner-product order
    ivf      no graph: an inverted file (IndexIVFScalarQuantizer, 8-bit codes, 4 sqrt(N) lists
             trained on 100,000 evenly spaced passages); "ef_search" is then nprobe, the lists searched

    python bench/graph_kinds.py --data-dir /tmp/msmarco-bench/run_100000/data --n 250000 --kinds raw,flat
    python bench/graph_kinds.py --data-dir DATA --n 1000000 --kinds flat,sq8 --ef-search 100,300
    python bench/graph_kinds.py --data-dir DATA --n 500000 --kinds flat,cos --max-neighbors 32 --probes 3

--probes W also searches the graph with each of the question's W heaviest words alone (the numpy
query tower is a weighted sum over words, so a passage in the question's top 10 scores at least as
well against one of its words as against the question), and rescores the union of the candidates.

Reads the active index's files (its float16 vectors and numpy query encoder) and builds each graph
in memory, one graph with all cores (M 16, ef_construction 100, as s05 builds each shard); writes
nothing (--json: the figures). A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
KINDS = ("raw", "flat", "sq8", "ivf", "cos")


def build(faiss, kind: str, X: np.ndarray, m: np.ndarray, max_neighbors: int = 16):
    dim = X.shape[1]
    if kind == "cos":
        g = faiss.IndexHNSWFlat(dim, max_neighbors, faiss.METRIC_L2)
        g.hnsw.efConstruction = 100
        for s in range(0, len(X), 50_000):
            r = X[s:s + 50_000] - m
            g.add(np.ascontiguousarray(r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-9)))
        return g
    if kind == "ivf":
        nlist = int(4 * np.sqrt(len(X)))
        quant = faiss.IndexFlatIP(dim)
        g = faiss.IndexIVFScalarQuantizer(quant, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        sample = np.unique(np.linspace(0, len(X) - 1, min(100_000, len(X))).astype(np.int64))
        g.train(np.ascontiguousarray(X[sample] - m))
        for s in range(0, len(X), 50_000):
            g.add(np.ascontiguousarray(X[s:s + 50_000] - m))
        return g
    from common.index.build import sample_rows
    from common.index.faiss_graph import make_graph, train_sq8
    ranges = train_sq8(X[sample_rows(len(X))] - m) if kind == "sq8" else None  # as s05 trains them
    g = make_graph(dim, max_neighbors, 100, "sq8" if kind == "sq8" else "flat", ranges)
    for s in range(0, len(X), 50_000):  # as s05 adds them
        g.add(np.ascontiguousarray(X[s:s + 50_000] - (0 if kind == "raw" else m)))
    return g


def word_probes(enc, text: str, w: int) -> np.ndarray:
    """The question's w heaviest distinct words, each as the query tower encodes a one-word question."""
    from common.vocab import UNK
    ids = np.asarray(enc.vocab.encode(text, enc.max_len) or [UNK], np.int64)
    words, inv = np.unique(ids, return_inverse=True)
    weight = np.bincount(inv, weights=enc.weights[ids])
    p = enc.table[words[np.argsort(-weight)[:w]]] + enc.bias
    return np.ascontiguousarray(p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12), np.float32)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--n", type=int, default=250_000, help="passages (the first N rows)")
    p.add_argument("--queries", type=int, default=300, help="test questions")
    p.add_argument("--kinds", default="raw,flat,sq8", help=f"comma list of {', '.join(KINDS)}")
    p.add_argument("--ef-search", default="100,300,800")
    p.add_argument("--max-neighbors", type=int, default=16, help="HNSW M (s05's default 16)")
    p.add_argument("--probes", type=int, default=0, help="also search with each of the W heaviest words")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    kinds = args.kinds.split(",")
    if set(kinds) - set(KINDS):
        sys.exit(f"--kinds: one or more of {', '.join(KINDS)}")
    import faiss
    import pyarrow.parquet as pq
    from common.corpus import load_vocab
    from common.query_encoder import NumpyQueryEncoder
    d = args.data_dir
    name = json.loads((d / "active_index.json").read_text())["name"]
    X = np.asarray(np.load(d / "indexes" / f"{name}.vectors.npy", mmap_mode="r")[:args.n], np.float32)
    vocab, _ = load_vocab(d)
    qs = pq.read_table(d / "queries.parquet", columns=["split", "query"]).to_pydict()
    qs = [q for s, q in zip(qs["split"], qs["query"]) if s == "test"][:args.queries]
    enc = NumpyQueryEncoder(d, name, vocab)
    Q, _ = enc.encode(qs)
    Q = np.ascontiguousarray(Q, np.float32)
    probes = [word_probes(enc, t, args.probes) for t in qs] if args.probes else [np.zeros((0, Q.shape[1]), np.float32)] * len(Q)
    exact = []
    for q in Q:
        sc = X @ q
        top = np.argpartition(-sc, 10)[:10]
        exact.append(top[np.argsort(-sc[top], kind="stable")])
    m = X.mean(0)
    print(f"{len(X):,} passages, {len(Q)} questions; mean cosine of the passages to their mean "
          f"{float((X @ (m / np.linalg.norm(m))).mean()):.3f}")
    print("\n| graph | M | word probes | build s | passages/s | size GB | ef_search | recall@10 | ms/question |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    out = []
    for kind in kinds:
        faiss.omp_set_num_threads(faiss.omp_get_max_threads())
        t = time.time()
        g = build(faiss, kind, X, m, args.max_neighbors)
        built = time.time() - t
        size = len(faiss.serialize_index(g)) / 1e9
        faiss.omp_set_num_threads(1)  # s09 searches each graph in one thread
        for ef in (int(x) for x in args.ef_search.split(",")):
            if kind == "ivf":
                g.nprobe = ef
            else:
                g.hnsw.efSearch = ef
            ms, top = [], []
            for q, pr in zip(Q, probes):
                t = time.perf_counter()
                _, I = g.search(np.vstack([q[None, :], pr]) if len(pr) else q[None, :], 100)
                r = np.unique(I[I >= 0])
                top.append(r[np.argsort(-(X[r] @ q), kind="stable")[:10]])
                ms.append((time.perf_counter() - t) * 1000)
            rec = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(top, exact)]))
            row = {"graph": kind, "max_neighbors": args.max_neighbors, "probes": args.probes, "build_s": built, "passages_per_s": len(X) / built, "gb": size, "ef_search": ef,
                   "recall": rec, "median_ms": float(np.median(ms))}
            out.append(row)
            print(f"| {kind} | {args.max_neighbors} | {args.probes} | {built:.0f} | {len(X) / built:,.0f} | {size:.2f} | {ef} | {rec:.4f} | {row['median_ms']:.2f} |",
                  flush=True)
        del g
    if args.json:
        args.json.write_text(json.dumps({"n": len(X), "queries": len(Q), "rows": out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
