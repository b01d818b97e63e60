"""Pseudo-relevance feedback on the query vector (Rocchio): does moving each question's vector
towards its own first results help dense and hybrid search? A lever measured for quality, not a
pipeline stage (README, "What helped and what did not").

    q' = unit(unit(q) + beta * unit(mean of the index vectors of the top fb_k))

where the top fb_k come from dense search (the model's own ranking) or from hybrid (s09's default,
which BM25 also feeds); then dense and hybrid search again with q' (hybrid with s09's weights), and
the runs are scored with ranx as s10 scores them.

    python bench/prf.py --data-dir data --split validation                       # the sample
    python bench/prf.py --data-dir data/external/beir-trec-dl-2019-XXXX --split test --rel-level 2

--data-dir is a pipeline's data folder, or the folder s10 --beir prepares (its graded judgments).
Searches through the active index exactly as s09 does (common.search.Searcher); writes nothing.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def questions(d: Path, split: str, clean):
    """(query ids, texts, judgments) of the split's questions with at least one positive grade."""
    import pyarrow.parquet as pq
    q = pq.read_table(d / "queries.parquet").to_pydict()
    graded = "grades" in q
    qids, texts, qrels = [], [], {}
    for i, s in enumerate(q["split"]):
        g = q["grades"][i] if graded and q["grades"][i] is not None else q["is_selected"][i]
        if s != split or not any(x > 0 for x in g):
            continue
        qid = str(q["query_id"][i])
        qids.append(qid)
        texts.append(clean(q["query"][i]))
        qrels[qid] = {str(p): int(x) for p, x in zip(q["passage_ids"][i], g)}
    return qids, texts, qrels


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--split", default="validation")
    p.add_argument("--rel-level", type=int, default=1, help="grade counted relevant by MRR and recall")
    p.add_argument("--fb-k", default="3,5,10", help="feedback passages")
    p.add_argument("--beta", default="0.5,1,2", help="weight of their mean")
    p.add_argument("--source", default="dense,hybrid", help="whose top fb_k is the feedback")
    args = p.parse_args()
    from common.metrics import evaluate
    from common.retrieval import FUSION_DEPTH, hybrid_features, hybrid_rank
    from common.search import Searcher

    S = Searcher(args.data_dir, mode="hybrid")
    bm25 = S.prepare_all_modes().bm25
    V, w = S.index.vecs, S.weights
    qids, texts, qrels = questions(args.data_dir, args.split, S.check_query)
    Q, _ = S.encode(texts)
    print(f"{len(qids)} questions ({args.split}), hybrid weights {w}", flush=True)

    def unit(x):
        return x / max(float(np.linalg.norm(x)), 1e-9)

    def dense(v, k=100):
        rows, sc = S.index.search(v[None], k)
        return rows[0], sc[0]

    def hybrid(v, text, k=100):
        cand, feats = hybrid_features(v, S.index.search(v[None], FUSION_DEPTH)[0][0], bm25, text, V, S.out_dim)
        return hybrid_rank(cand, feats, w[0], w[1], k)

    def score(runs):
        run = {q: {str(i): float(s) for i, s in zip(S.index.ids(r).tolist(), np.asarray(sc).tolist())}
               for q, (r, sc) in zip(qids, runs)}
        m = evaluate(run, qrels, ("ndcg@10", "mrr@10", "recall@100"), args.rel_level)
        return " / ".join(f"{v:.4f}" for v in m.values())

    print("| feedback from | fb_k | beta | dense nDCG@10 / MRR@10 / R@100 | hybrid nDCG@10 / MRR@10 / R@100 |")
    print("|---|---:|---:|---|---|")
    settings = [("none", 0, 0.0)] + [(s, int(k), float(b)) for s in args.source.split(",")
                                     for k in args.fb_k.split(",") for b in args.beta.split(",")]
    for src, k, b in settings:
        t0, dr, hr = time.perf_counter(), [], []
        for v, text in zip(np.asarray(Q, np.float32), texts):
            if k:
                first = dense(v, k)[0] if src == "dense" else hybrid(v, text, k)[0]
                v = unit(unit(v) + b * unit(np.asarray(V[np.sort(first)], np.float32).mean(0))).astype(np.float32)
            dr.append(dense(v))
            hr.append(hybrid(v, text))
        print(f"| {src} | {k} | {b:g} | {score(dr)} | {score(hr)} |  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
