"""How much of the exact top 10 the passage index finds, and how fast: recall@10 of the active (or a
named) faiss index against exact search over its own full vectors, at each ef_search, with the
per-query search time (graph + rescoring, one thread per graph as s09 searches).

    python bench/index_recall.py --data-dir data                          # active index, 300 queries
    python bench/index_recall.py --data-dir data --ef-search 100,300,800 --queries test
    python bench/index_recall.py --data-dir data --rebuilds 2             # how much a rebuild changes
    python bench/index_recall.py --data-dir data --codes sq8              # the same index as an sq8 graph
    python bench/index_recall.py --data-dir data --queries test --lexical 0,100  # BM25's top 100 rescored too
    python bench/index_recall.py --data-dir data --queries test --probes 3  # + each of 3 heaviest words alone
    python bench/index_recall.py --data-dir data/external/beir-trec-dl-2019-XXXX --index NAME

It reads the pipeline's index files directly (numpy and faiss), so it does not depend on how the
library wraps them (a graph it builds again is made by the library's own constructor):
    data/active_index.json            the active index's name and settings (--index NAME: its
                                      data/indexes/NAME.json instead)
    data/indexes/NAME.vectors.npy     float16 full vectors, one row per passages_tok row
    data/indexes/NAME.faiss           the HNSW graph over the index vectors, labels = rows
    data/indexes/NAME.<i>of<n>.faiss  shard i of n: rows [i * total // n, (i + 1) * total // n)

Queries (--queries): `passages` (default) takes N passages' own vectors, each query's own row left
out of both answers, so it needs nothing but the index; `test` encodes the test split's questions
with the index's numpy query encoder (the only use of common/: its vocabulary and query encoder);
or a .npy file of query vectors (float32, one row per query, the index's full dimension).

--rebuilds N builds the graph N more times from the same vectors with the index's recorded HNSW
settings (with --build-threads OpenMP threads, as s05 builds it) and reports, per ef_search, the
share of queries whose final top 10 differs from the stored graph's: the run-to-run noise that
bench/reproduction.json's HNSW tolerances allow for.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

K = 10


def index_state(data_dir: Path, name: str | None) -> dict:
    p = data_dir / "active_index.json" if name is None else data_dir / "indexes" / f"{name}.json"
    if not p.exists():
        sys.exit(f"{p} not found: " + ("run s05_encode_docs_to_chromadb.py first" if name is None
                                       else "no index of that name (see data/indexes/)"))
    st = json.loads(p.read_text())
    if st.get("backend", "faiss") != "faiss":
        sys.exit(f"index {st.get('name')} is a {st.get('backend')} index: this tool reads faiss graphs only")
    return st


def graph_files(data_dir: Path, name: str, shards: int) -> list[Path]:
    base = data_dir / "indexes"
    return [base / f"{name}.faiss"] if shards == 1 else [base / f"{name}.{i}of{shards}.faiss" for i in range(shards)]


def bounds(total: int, shards: int) -> list[tuple[int, int]]:
    return [(i * total // shards, (i + 1) * total // shards) for i in range(shards)]


def to_index_vectors(x: np.ndarray, st: dict) -> np.ndarray:
    """The vectors the graph holds: the full ones when the index holds them whole (the default
    model), else the library's own projection (a lexical code: common.index.vectors)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if int(st.get("index_dim", st["dim"])) == int(st["dim"]):
        return x
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from common.index.vectors import index_vectors
    return np.ascontiguousarray(index_vectors(x, st["out_dim"], st["lex_dim"], st["index_dim"]), dtype=np.float32)


def exact_top(q: np.ndarray, vecs: np.ndarray, k: int, skip: np.ndarray | None, chunk: int = 100_000) -> np.ndarray:
    """Rows of the exact top k of each query over the float16 full vectors, in chunks."""
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_r = np.zeros((len(q), k), np.int64)
    for lo in range(0, vecs.shape[0], chunk):
        sc = q @ np.asarray(vecs[lo:lo + chunk], np.float32).T
        if skip is not None:
            m = (skip >= lo) & (skip < lo + sc.shape[1])
            sc[np.nonzero(m)[0], skip[m] - lo] = -np.inf
        cat_s = np.concatenate([best_s, sc], 1)
        cat_r = np.concatenate([best_r, np.broadcast_to(np.arange(lo, lo + sc.shape[1]), sc.shape)], 1)
        top = np.argpartition(-cat_s, k - 1, axis=1)[:, :k]
        best_s, best_r = np.take_along_axis(cat_s, top, 1), np.take_along_axis(cat_r, top, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_r, order, 1)


def search(graphs, bnds, pool, qi: np.ndarray, qf: np.ndarray, vecs, depth: int, skip: int | None, lexical=None,
           probes=None):
    """One query: each graph's top `depth` (in parallel threads), rows, rescored by the full vectors
    (with lexical() the rows it returns too: BM25's top rows for the question, --lexical; with
    probes, the graphs' top `depth` for each probe vector too, --probes).
    Returns (graph-only top k rows, final top k rows)."""
    asked = qi[None, :] if probes is None else np.vstack([qi[None, :], probes])
    left_out = -2 if skip is None else skip

    def one(i):
        sims, labels = graphs[i].search(asked, int(min(depth + 1, bnds[i][1] - bnds[i][0])))
        return sims, np.where(labels >= 0, labels + bnds[i][0], -1)
    parts = list(pool.map(one, range(len(graphs)))) if pool else [one(0)]
    sims = np.concatenate([p[0][0] for p in parts])
    rows = np.concatenate([p[1][0] for p in parts])
    keep = (rows >= 0) & (rows != left_out)
    sims, rows = sims[keep], rows[keep]
    by_graph = rows[np.argsort(-sims, kind="stable")][:depth]
    cand = by_graph
    if len(asked) > 1:
        more = np.concatenate([p[1][1:].ravel() for p in parts])
        cand = np.union1d(cand, more[(more >= 0) & (more != left_out)])
    cand = np.sort(cand) if lexical is None else np.union1d(cand, lexical())
    full = np.asarray(vecs[cand], np.float32) @ qf
    return by_graph[:K], cand[np.argsort(-full, kind="stable")[:K]]


def overlap(a, b) -> float:
    return float(np.mean([len(set(x.tolist()) & set(y.tolist())) / K for x, y in zip(a, b)]))


def build_like(faiss, st: dict, vecs, bnds, threads: int, codes: str | None = None):
    """A fresh graph per shard from the same vectors, as s05 builds it: the index's recorded HNSW
    settings, its centre, and its codes (or `codes`: flat or sq8, ranges from the centring sample)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from common.index.build import sample_rows
    from common.index.faiss_graph import make_graph, train_sq8
    h = st.get("hnsw", {})
    dim = int(st.get("index_dim", st["dim"]))
    codes = codes or st.get("codes", "flat")
    centre = np.asarray(st["centre"], np.float32) if st.get("centre") is not None else 0
    faiss.omp_set_num_threads(threads)
    ranges = st.get("sq_trained")
    if codes == "sq8" and ranges is None:
        ranges = train_sq8(to_index_vectors(vecs[sample_rows(vecs.shape[0])], st) - centre)
    out = []
    for lo, hi in bnds:
        g = make_graph(dim, int(h.get("max_neighbors", 16)), int(h.get("ef_construction", 100)), codes, ranges)
        for s in range(lo, hi, 50_000):
            g.add(np.ascontiguousarray(to_index_vectors(vecs[s:min(s + 50_000, hi)], st) - centre))
        out.append(g)
    faiss.omp_set_num_threads(1)
    return out


def queries(args, st: dict, vecs) -> tuple[np.ndarray, np.ndarray | None, str, list | None, list | None]:
    """(query vectors, the row to leave out of each answer or None, what they are, their texts or
    None, each one's --probes vectors or None)."""
    if args.queries == "passages":
        rng = np.random.default_rng(args.seed)
        rows = np.sort(rng.choice(vecs.shape[0], size=min(args.n, vecs.shape[0]), replace=False))
        q = np.asarray(vecs[rows], np.float32)
        return q / np.linalg.norm(q, axis=1, keepdims=True).clip(1e-12), rows, "passage vectors (own row left out)", None, None
    if args.queries == "test":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        import pyarrow.parquet as pq
        from common.corpus import load_vocab
        from common.query_encoder import NumpyQueryEncoder
        t = pq.read_table(args.data_dir / "queries.parquet", columns=["split", "query"]).to_pydict()
        texts = [x for s, x in zip(t["split"], t["query"]) if s == "test"][:args.n]
        vocab = load_vocab(args.data_dir)[0]
        enc = NumpyQueryEncoder(args.data_dir, st["name"], vocab)
        q, _ = enc.encode(texts)
        probes = None
        if args.probes:  # each question's heaviest words alone (bench/graph_kinds.py's word probes)
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from graph_kinds import word_probes
            probes = [to_index_vectors(word_probes(enc, t, args.probes), st) for t in texts]
        return q.astype(np.float32), None, f"test-split questions ({st['name']}'s query encoder)", texts, probes
    q = np.load(args.queries).astype(np.float32)[:args.n]
    if q.shape[1] != vecs.shape[1]:
        sys.exit(f"{args.queries}: {q.shape[1]}-d query vectors, the index holds {vecs.shape[1]}-d ones")
    return q, None, f"query vectors from {args.queries}", None, None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--index", default=None, help="an index name under data/indexes/ (default: the active one)")
    p.add_argument("--ef-search", default=None, help="comma list (default: the index's own, and 100,200,400,800)")
    p.add_argument("--queries", default="passages", help="passages, test, or a .npy file (see above)")
    p.add_argument("-n", type=int, default=300, help="number of queries (default %(default)s)")
    p.add_argument("--depth", type=int, default=None, help="graph candidates rescored (default: the index's)")
    p.add_argument("--rebuilds", type=int, default=0, help="build the graph this many more times and compare")
    p.add_argument("--codes", default=None, choices=("flat", "sq8"),
                   help="measure a graph with these codes instead of the stored one: built in memory from the "
                        "index's vectors (its centre, HNSW settings and shards), with its build rate and size")
    p.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--lexical", default="0",
                   help="comma list: also rescore BM25's top N rows for the question (needs --queries test; 0: "
                        "the graph alone)")
    p.add_argument("--probes", type=int, default=0,
                   help="also search the graphs with each of the question's W heaviest words alone (--queries test)")
    p.add_argument("--seed", type=int, default=0, help="which passages --queries passages takes")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()

    import faiss
    st = index_state(args.data_dir, args.index)
    name, shards, total = st["name"], int(st.get("shards", 1)), int(st["total"])
    vecs = np.load(args.data_dir / "indexes" / f"{name}.vectors.npy", mmap_mode="r")
    files = graph_files(args.data_dir, name, shards)
    missing = [str(f) for f in files if not f.exists()]
    if missing or not st.get("complete", True):
        sys.exit(f"index {name} is not complete ({', '.join(missing) or 'active_index.json says so'}): "
                 "re-run s05_encode_docs_to_chromadb.py or s08_reencode_all.py")
    faiss.omp_set_num_threads(1)
    graphs = [faiss.read_index(str(f)) for f in files]
    bnds = bounds(total, shards)
    built = None
    if args.codes and args.codes != st.get("codes", "flat"):
        t0 = time.perf_counter()
        graphs = build_like(faiss, st, vecs, bnds, args.build_threads, args.codes)
        secs = time.perf_counter() - t0
        size = sum(len(faiss.serialize_index(g)) for g in graphs)
        built = {"codes": args.codes, "seconds": secs, "passages_per_s": total / secs, "bytes": size}
        print(f"built {args.codes} graph(s) in memory: {secs:.1f} s ({total / secs:,.0f} passages/s with "
              f"{args.build_threads} threads), {size / 1e9:.2f} GB (the stored ones: "
              f"{sum(f.stat().st_size for f in files) / 1e9:.2f} GB)", flush=True)
    if [g.ntotal for g in graphs] != [hi - lo for lo, hi in bnds]:
        sys.exit(f"index {name}: graphs hold {[g.ntotal for g in graphs]} passages, expected {[hi - lo for lo, hi in bnds]}")
    own_ef = int(st.get("hnsw", {}).get("ef_search", 0)) or None
    efs = ([int(x) for x in args.ef_search.split(",")] if args.ef_search
           else sorted({100, 200, 400, 800} | ({own_ef} if own_ef else set())))
    depth = args.depth or int(st.get("depth", 100))

    q, skip, what, texts, probes = queries(args, st, vecs)
    if args.probes and probes is None:
        sys.exit("--probes needs --queries test (the probes are the questions' words)")
    lexes = [int(x) for x in str(args.lexical).split(",")]
    bm25 = None
    if any(lexes):
        if texts is None:
            sys.exit("--lexical needs --queries test (BM25 needs the questions' words)")
        from common import bm25 as bm25_mod
        from common.index.vectors import FullVectors
        from common.retrieval import check_aligned, lexical_rows
        bm25 = bm25_mod.load_or_build(args.data_dir, repair=False)
        check_aligned(FullVectors(args.data_dir, name).row_ids, bm25)  # BM25's rows are the index's
    qi = to_index_vectors(q, st)
    t0 = time.perf_counter()
    exact = exact_top(q, vecs, K, skip)
    exact_s = time.perf_counter() - t0
    pool = ThreadPoolExecutor(len(graphs)) if len(graphs) > 1 else None
    rebuilt = []
    for n in range(args.rebuilds):
        t0 = time.perf_counter()
        rebuilt.append(build_like(faiss, st, vecs, bnds, args.build_threads, args.codes))
        print(f"rebuild {n + 1}: {time.perf_counter() - t0:.1f} s with {args.build_threads} threads", flush=True)

    out = {"index": name, "data_dir": str(args.data_dir), "passages": total, "shards": shards, "depth": depth,
           "queries": len(q), "query_source": what, "index_ef_search": own_ef,
           "exact_search_ms_per_query": 1000 * exact_s / max(1, len(q)), "codes": args.codes or st.get("codes", "flat"),
           "built_in_memory": built, "runs": []}
    print(f"index {name}: {total:,} passages in {shards} graph(s), {st.get('index_dim', st['dim'])}-d graph, "
          f"top {depth} rescored by the {vecs.shape[1]}-d full vectors; {len(q)} queries: {what}")
    hdr = "| ef_search | BM25 rows rescored too | recall@10, graph alone | recall@10 after rescoring | search median ms | p95 ms |"
    if rebuilt:
        hdr += " top 10 changed by a rebuild (share of queries) |"
    print("\n" + hdr + "\n|" + "---:|" * hdr.count(" |"))
    for ef, lex in [(e, x) for e in efs for x in lexes]:
        for g in graphs + [g for gs in rebuilt for g in gs]:
            g.hnsw.efSearch = ef
        alone, final, ms = [], [], []
        for i in range(len(q)):
            t1 = time.perf_counter()
            lexical = (lambda: lexical_rows(bm25, [texts[i]], n=lex)[0]) if lex else None
            a, f = search(graphs, bnds, pool, qi[i], q[i], vecs, depth, None if skip is None else int(skip[i]),
                          lexical, None if probes is None else probes[i])
            ms.append((time.perf_counter() - t1) * 1000)
            alone.append(a)
            final.append(f)
        row = {"ef_search": ef, "lexical": lex, "recall_graph": overlap(alone, exact), "recall": overlap(final, exact),
               "median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}
        if rebuilt:
            changed = []
            for gs in rebuilt:
                other = [search(gs, bnds, pool, qi[i], q[i], vecs, depth, None if skip is None else int(skip[i]))[1]
                         for i in range(len(q))]
                changed.append(float(np.mean([not np.array_equal(a, b) for a, b in zip(final, other)])))
            row["rebuild_changed"] = changed
        out["runs"].append(row)
        mark = " (the index's)" if ef == own_ef else ""
        line = (f"| {ef}{mark} | {lex or '-'} | {row['recall_graph']:.4f} | {row['recall']:.4f} | {row['median_ms']:.2f} | "
                f"{row['p95_ms']:.2f} |")
        if rebuilt:
            line += " " + " / ".join(f"{c:.4f}" for c in row["rebuild_changed"]) + " |"
        print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
