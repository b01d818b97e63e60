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


def evaluate(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
             metrics=REPORTED) -> dict[str, float]:
    """run: query id -> {passage id: score}; qrels: query id -> {passage id: 1}.
    Queries missing from the run count as zero (ranx would drop them)."""
    from ranx import Qrels, Run, evaluate as rx_eval
    qrels = {q: r for q, r in qrels.items() if r}
    full_run = {q: (run.get(q) or {"__none__": 0.0}) for q in qrels}
    res = rx_eval(Qrels(qrels), Run(full_run), list(metrics), make_comparable=True)
    if isinstance(res, float):
        res = {metrics[0]: res}
    return {m: float(v) for m, v in res.items()}


def ranked_to_run(qids, ranked_ids, scores) -> dict[str, dict[str, float]]:
    run = {}
    for q, ids, sc in zip(qids, ranked_ids, scores):
        d = {}
        for p, s in zip(ids, sc):
            d.setdefault(str(p), float(s))
        run[str(q)] = d
    return run
