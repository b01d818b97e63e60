"""One teacher-scored negative per distilled training question (s04 --teacher-neg, for --mmse / --rel).

For each (question, positive) pair the teacher has embedded (common/train.attach_teacher), one
negative passage from the training pool:
- "bm25": drawn at random from ranks skip..depth of BM25's ranking of the pool for the question,
  among the training questions' passages only (all_pool: any; never a passage selected for the
  question);
- "candidates": drawn at random from the question's own unselected candidates (the passages
  MS MARCO's annotators saw beside the positive; they share the question's words);
- "mined": the negative of data/hard_negatives.parquet (s06: the s04 model's ranks 3-30).
The teacher embeds each chosen negative once (cached by passage id in data/teacher/passages.npz,
beside the positives' targets), and a negative the teacher scores at least as close to the
question as its positive (minus `fn_margin`) is dropped as a likely false negative: that row then
has none. The teacher's cost is bounded by the number of distilled pairs (one passage each).
"""
from __future__ import annotations

import time

import numpy as np


def attach(ts, corpus, source: str, device, skip: int = 3, depth: int = 30, fn_margin: float = 0.0,
           basis: np.ndarray | None = None, all_pool: bool = False, log=print) -> dict:
    from . import teacher
    from .train import RowTargets, _texts
    d = corpus.data_dir
    pairs, tq, tp = ts.t_raw
    rng = np.random.default_rng(1234)  # the same negatives for every training seed: one teacher cache
    qids = pairs[:, 0]
    pos_of = {}
    cand_of = {}
    for s, q, pids, sel in zip(corpus.queries["split"], corpus.queries["query_id"],
                               corpus.queries["passage_ids"], corpus.queries["is_selected"]):
        if s == "train":
            pos_of[q] = {p for p, x in zip(pids, sel) if x == 1}
            cand_of[q] = [p for p, x in zip(pids, sel) if x != 1]
    t0 = time.perf_counter()
    neg = np.zeros(len(pairs), dtype=np.int64)  # passage ids are signed hashes: `have` says which are set
    have = np.zeros(len(pairs), dtype=bool)
    if source == "bm25":
        from . import bm25
        train_pool = {p for q in cand_of for p in cand_of[q]} | {p for q in pos_of for p in pos_of[q]}
        index = bm25.load_or_build(d, log=log)
        qtext = _texts(d / "queries.parquet", "query", corpus.qidx)(qids)
        ids, _ = index.search(qtext, depth)
        for i, q in enumerate(qids):  # ranks skip..depth of the pool, training questions' passages only
            window = [p for p in ids[i][skip:depth] if p not in pos_of.get(int(q), ()) and p != pairs[i, 1]
                      and (all_pool or int(p) in train_pool)]
            if window:
                neg[i], have[i] = window[rng.integers(len(window))], True
    elif source == "candidates":
        valid = set(corpus.ptok.ids.tolist())
        for i, q in enumerate(qids):
            c = [p for p in cand_of.get(int(q), []) if p in valid]
            if c:
                neg[i], have[i] = c[rng.integers(len(c))], True
    elif source == "mined":
        import pyarrow.parquet as pq
        hn = pq.read_table(d / "hard_negatives.parquet", columns=["query_id", "pos_id", "neg_id"]).to_pydict()
        at = {(q, p): n for q, p, n in zip(hn["query_id"], hn["pos_id"], hn["neg_id"])}
        for i, (q, p) in enumerate(pairs):
            if (int(q), int(p)) in at:
                neg[i], have[i] = at[(int(q), int(p))], True
    else:
        raise ValueError(f"unknown teacher negative source {source!r}")
    mine_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ptext = _texts(d / "passages.parquet", "text", corpus.pidx)
    tn = np.zeros_like(tp)
    if have.any():
        tn[have] = teacher.targets(d, "passages", neg[have], ptext, device, log)
    teach_s = time.perf_counter() - t0
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    tq_u, tp_u, tn_u = unit(tq), unit(tp), unit(tn)
    s_pos, s_neg = (tq_u * tp_u).sum(1), (tq_u * tn_u).sum(1)
    false_neg = have & (s_neg >= s_pos - fn_margin)
    keep = have & ~false_neg
    # per training row
    at = {(int(q), int(p)): i for i, (q, p) in enumerate(pairs)}
    src = np.array([at.get((int(q), int(p)), -1) for q, p in zip(ts.qids, ts.pids)], dtype=np.int64)
    ok = (src >= 0) & keep[np.maximum(src, 0)]
    at = np.where(ok, src, -1)
    src = np.maximum(src, 0)
    ts.has_tn = ok
    ts.tn_rows = np.where(ok, corpus.pidx.rows(np.where(keep, neg, pairs[:, 1])[src]), 0)
    ts.t_nf = RowTargets(tn_u, at)
    if basis is not None:
        ts.t_n = RowTargets(unit(tn @ basis), at)
    stats = {"source": source, "pairs": int(len(pairs)), "with_negative": int(have.sum()),
             "dropped_false_negative": int(false_neg.sum()), "rows_with_negative": int(ok.sum()),
             "mine_s": round(mine_s, 1), "teacher_s": round(teach_s, 1),
             "teacher_pos_mean": float(s_pos[keep].mean()) if keep.any() else None,
             "teacher_neg_mean": float(s_neg[keep].mean()) if keep.any() else None}
    log(f"teacher negatives: {stats}")
    return stats
