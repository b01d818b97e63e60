"""Ranking metrics.

`evaluate` uses ranx (a well-kept IR evaluation library) for the reported figures: MRR@10,
Recall@10, Recall@100, nDCG@10. `mrr_at_k` is a small numpy version for the validation pass inside
training, where importing and JIT-compiling ranx every epoch would cost more than the pass itself.
Both are checked against hand-computed cases in tests/test_metrics.py.
"""
from __future__ import annotations

import numpy as np

REPORTED = ("mrr@10", "recall@10", "recall@100", "ndcg@10")


def mrr_at_k(ranked: np.ndarray, relevant: list[set], k: int = 10) -> float:
    """ranked: (n_queries, >=k) ids, best first; relevant: the relevant ids of each query."""
    total = 0.0
    for row, rel in zip(ranked, relevant):
        for r, pid in enumerate(row[:k]):
            if pid in rel:
                total += 1.0 / (r + 1)
                break
    return total / max(len(relevant), 1)


def recall_at_k(ranked: np.ndarray, relevant: list[set], k: int) -> float:
    vals = [len(set(row[:k].tolist()) & rel) / len(rel) for row, rel in zip(ranked, relevant) if rel]
    return float(np.mean(vals)) if vals else 0.0


GRADED = ("ndcg",)  # metrics that use the relevance grades themselves; the others count grade >= rel_level


def evaluate(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
             metrics=REPORTED, rel_level: int = 1) -> dict[str, float]:
    """run: query id -> {passage id: score}; qrels: query id -> {passage id: grade} (graded or 0/1).
    nDCG uses the grades as gains (trec_eval's ndcg_cut); MRR, Recall and the like count a passage
    as relevant when its grade >= rel_level (ranx's "-l<N>" metrics; trec_eval's -l). Queries with
    no passage at that level are left out (nothing to find); queries missing from the run count
    as zero (ranx would drop them)."""
    from ranx import Qrels, Run, evaluate as rx_eval
    rel_level = int(rel_level)
    if rel_level < 1:
        raise ValueError("rel_level must be >= 1")
    qrels = {q: {p: int(g) for p, g in r.items()} for q, r in qrels.items()
             if r and max(r.values()) >= rel_level}
    if not qrels:
        return {m: 0.0 for m in metrics}
    full_run = {q: (run.get(q) or {"__none__": 0.0}) for q in qrels}
    names = {m: (m if rel_level == 1 or m.split("@")[0] in GRADED else f"{m}-l{rel_level}") for m in metrics}
    res = rx_eval(Qrels(qrels), Run(full_run), list(names.values()), make_comparable=True)
    if isinstance(res, float):
        res = {names[metrics[0]]: res}
    return {m: float(res[n]) for m, n in names.items()}


def ranked_to_run(qids, ranked_ids, scores) -> dict[str, dict[str, float]]:
    run = {}
    for q, ids, sc in zip(qids, ranked_ids, scores):
        d = {}
        for p, s in zip(ids, sc):
            d.setdefault(str(p), float(s))
        run[str(q)] = d
    return run
