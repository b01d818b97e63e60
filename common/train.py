"""Training the two towers (used by s04 and s07).

Default loss: in-batch negatives. For each query the softmax runs over every passage in the batch:
its own positive, the other queries' positives, and every triplet's negative (random in s04, mined
in s07), scaled by a temperature. Batch entries that are in fact relevant to the query (the same
positive twice, or another positive of the same query) are masked out, not punished.
`--loss triplet` keeps the original triplet-margin loss for comparison.

After each epoch the model ranks a validation pool and the best MRR@10 checkpoint is kept.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F

from .artifacts import atomic_path
from .corpus import Corpus
from .encode import autocast, encode_rows
from .metrics import mrr_at_k, recall_at_k
from .model import TwoTowerModel


@dataclass
class TrainSet:
    q_rows: np.ndarray
    p_rows: np.ndarray
    n_rows: np.ndarray
    qids: np.ndarray
    pids: np.ndarray
    nids: np.ndarray

    def __len__(self):
        return len(self.q_rows)


def train_set(corpus: Corpus, triplets: pa.Table, split: str = "train") -> TrainSet:
    t = triplets.filter(pc.equal(triplets["split"], split)) if "split" in triplets.column_names else triplets
    qids = t["query_id"].to_numpy()
    pids = t["pos_id"].to_numpy()
    nids = t["neg_id"].to_numpy()
    return TrainSet(corpus.qidx.rows(qids), corpus.pidx.rows(pids), corpus.pidx.rows(nids), qids, pids, nids)


@dataclass
class ValSet:
    q_rows: np.ndarray
    relevant: list
    pool_rows: np.ndarray
    pool_ids: np.ndarray


def validation_set(corpus: Corpus, split: str = "validation", pool_size: int = 200_000, seed: int = 0) -> ValSet:
    """The split's queries, ranked against their own relevant passages plus other pool passages
    (all of them when the pool is at most `pool_size`)."""
    qids, rel = corpus.split_queries(split)
    n = len(corpus.ptok)
    if n <= pool_size:
        pool_rows = np.arange(n)
    else:
        rng = np.random.default_rng(seed)
        must = corpus.pidx.rows(np.fromiter((p for r in rel for p in r), dtype=np.int64))
        rest = rng.choice(n, size=pool_size, replace=False)
        pool_rows = np.unique(np.concatenate([must, rest]))
    return ValSet(corpus.qidx.rows(qids), rel, pool_rows, corpus.ptok.ids[pool_rows])


@torch.no_grad()
def search_exact(qv: np.ndarray, pv: np.ndarray, k: int, device, chunk: int = 1024, pchunk: int = 1 << 18):
    """Exact top-k by dot product (unit vectors: cosine). Returns (indices, scores). The pool (float32
    or float16) is scored `pchunk` passages at a time, converted to float32 chunk by chunk, and at
    most ~64M scores are held at once: at 1M passages, scoring 1,024 queries against the whole
    float32 pool at once took s10 to a 9.86 GB peak."""
    qv = np.asarray(qv, dtype=np.float32)
    k = min(k, len(pv))
    best_v = torch.full((len(qv), k), -float("inf"))
    best_i = torch.zeros((len(qv), k), dtype=torch.long)
    for ps in range(0, len(pv), pchunk):
        P = torch.from_numpy(np.ascontiguousarray(pv[ps:ps + pchunk], dtype=np.float32)).to(device)
        kk = min(k, len(P))
        step = max(1, min(chunk, (1 << 26) // len(P)))
        for s in range(0, len(qv), step):
            Q = torch.from_numpy(qv[s:s + step]).to(device)
            v, i = torch.topk(Q @ P.T, kk, dim=1)
            cv = torch.cat([best_v[s:s + step], v.float().cpu()], 1)
            ci = torch.cat([best_i[s:s + step], i.cpu() + ps], 1)
            top = torch.topk(cv, k, dim=1)
            best_v[s:s + step], best_i[s:s + step] = top.values, ci.gather(1, top.indices)
        del P
    return best_i.numpy(), best_v.numpy()


def validate(model: TwoTowerModel, corpus: Corpus, vs: ValSet, device, max_len: int = 256) -> dict:
    pv = encode_rows(model, corpus.ptok, vs.pool_rows, "passage", device, max_len=max_len)
    qv = encode_rows(model, corpus.qtok, vs.q_rows, "query", device, max_len=64)
    idx, _ = search_exact(qv, pv, 100, device)
    ranked = vs.pool_ids[idx]
    return {"mrr@10": mrr_at_k(ranked, vs.relevant, 10), "recall@100": recall_at_k(ranked, vs.relevant, 100)}


def batch_loss(model, corpus, ts: TrainSet, b: np.ndarray, loss: str, device, max_len: int,
               temperature: float, margin: float):
    qi, ql = corpus.qtok.batch(ts.q_rows[b], 64)
    cand_rows = np.concatenate([ts.p_rows[b], ts.n_rows[b]])
    pi, pl = corpus.ptok.batch(cand_rows, max_len)
    t = lambda a: torch.from_numpy(a).to(device, non_blocking=True)
    with autocast(device):
        q = model.encode_query(t(qi), t(ql)).float()
        c = model.encode_passage(t(pi), t(pl)).float()
    B = len(b)
    if loss == "triplet":
        pos = (q * c[:B]).sum(1)
        neg = (q * c[B:]).sum(1)
        return F.relu(margin - pos + neg).mean()
    logits = q @ c.T / temperature
    cand_ids = np.concatenate([ts.pids[b], ts.nids[b]])
    # mask batch entries that are relevant to the query but are not its target
    same = (cand_ids[None, :] == ts.pids[b][:, None])
    same[:, :B] |= ts.qids[b][:, None] == ts.qids[b][None, :]
    same[np.arange(B), np.arange(B)] = False
    logits = logits.masked_fill(t(same), float("-inf"))
    return F.cross_entropy(logits, torch.arange(B, device=device))


def fit(model: TwoTowerModel, corpus: Corpus, ts: TrainSet, vs: ValSet, device, out_path: Path,
        epochs: int, batch_size: int, lr: float, lr_emb: float, loss: str = "inbatch",
        margin: float = 0.2, max_len: int = 256, seed: int = 0, run=None, meta: dict | None = None,
        patience: int = 0, start_mrr: float | None = None, log=print):
    """Train; after each epoch validate and keep the best checkpoint at out_path."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model.to(device)
    sparse = model.sparse_parameters()
    opts = [torch.optim.Adam(model.dense_parameters(), lr=lr)]
    if sparse:
        opts.append(torch.optim.SparseAdam(sparse, lr=lr_emb))
    temperature = model.config["temperature"]
    steps_per_epoch = max(1, math.ceil(len(ts) / batch_size))
    best = {"mrr@10": -1.0 if start_mrr is None else start_mrr, "epoch": -1}
    history = []
    since_best = 0
    from tqdm import tqdm
    for epoch in range(1, epochs + 1):
        model.train()
        perm = rng.permutation(len(ts))
        t0, total = time.perf_counter(), 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False, mininterval=1)
        for s in bar:
            b = perm[s * batch_size:(s + 1) * batch_size]
            if len(b) < 2:
                continue
            l = batch_loss(model, corpus, ts, b, loss, device, max_len, temperature, margin)
            for o in opts:
                o.zero_grad(set_to_none=True)
            l.backward()
            for o in opts:
                o.step()
            total += l.item()
        bar.close()
        train_s = time.perf_counter() - t0
        v = validate(model, corpus, vs, device, max_len)
        rec = {"epoch": epoch, "loss": total / steps_per_epoch, "val_mrr@10": v["mrr@10"],
               "val_recall@100": v["recall@100"], "pairs_per_s": len(ts) / train_s}
        history.append(rec)
        if run is not None:
            run.log(rec)
        improved = v["mrr@10"] > best["mrr@10"]
        log(f"epoch {epoch:3d}  loss {rec['loss']:.4f}  val MRR@10 {v['mrr@10']:.4f}  "
            f"R@100 {v['recall@100']:.4f}  {rec['pairs_per_s']:,.0f} pairs/s" + ("  *best" if improved else ""))
        if improved:
            best = {"mrr@10": v["mrr@10"], "recall@100": v["recall@100"], "epoch": epoch}
            save_checkpoint(model, out_path, val=best, history=history, **(meta or {}))
            since_best = 0
        else:
            since_best += 1
            if patience and since_best >= patience:
                log(f"no improvement for {patience} epochs: stopping")
                break
    return best, history


def save_checkpoint(model: TwoTowerModel, path: Path, **extra):
    with atomic_path(path) as tmp:
        torch.save(model.checkpoint(**extra), tmp)
