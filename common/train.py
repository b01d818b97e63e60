"""Training the two towers (used by s04 and s07).

Default loss (`--loss triplet`): the triplet margin, relu(margin - cos(q, pos) + cos(q, neg)), with
the triplet's negative (random in s04, mined in s07). `--loss inbatch`: for each query a softmax
over every passage in the batch (its own positive, the other queries' positives, every triplet's
negative), scaled by a temperature; batch entries that are in fact relevant to the query are
masked out, not punished. With the teacher, the margin wins on both the sample's validation and
TREC DL 2019 (README, "What helped"): it asks less of the ~5k labels and leaves the geometry to
the teacher, where the softmax at temperature 0.05 pulls every batch apart by the labels alone.

Distillation (`distill` > 0): for the training pairs the teacher has embedded (common/teacher.py),
each tower's vector is also pulled towards the teacher's vector of the same text, seen through
the head's starting projection P (the leading principal directions of the teacher's passage
embeddings): loss += distill * mean(1 - cos(q, unit(P t_q)) + 1 - cos(p, unit(P t_p))). Labels
alone are ~5k pairs; the teacher says how every one of those texts relates to all others.
`--distill-passages N` (attach_passages): N more training passages with a teacher target and no
label, each batch pulling its share of them (every one once an epoch) the same way.

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
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from . import distributed
from .artifacts import atomic_path
from .corpus import Corpus
from .encode import autocast, encode_rows
from .exact import search_exact
from .metrics import mrr_at_k, recall_at_k
from .model import TwoTowerModel


class RowTargets:
    """Teacher targets per training row, held once per embedded pair: row i's is values[at[i]], zero
    where at[i] < 0. Dense per-row arrays held v2.1's 800k rows x 1,152 floats (3.7 GB) for the
    10,000 pairs the teacher embeds."""

    def __init__(self, values: np.ndarray, at: np.ndarray):
        self.values, self.at = np.ascontiguousarray(values, dtype=np.float32), np.asarray(at, np.int64)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.at), self.values.shape[1]

    def __getitem__(self, rows) -> np.ndarray:
        a = self.at[rows]
        out = np.zeros((len(a), self.values.shape[1]), np.float32)
        out[a >= 0] = self.values[a[a >= 0]]
        return out


@dataclass
class TrainSet:
    q_rows: np.ndarray
    p_rows: np.ndarray
    n_rows: np.ndarray
    qids: np.ndarray
    pids: np.ndarray
    nids: np.ndarray
    t_q: RowTargets | None = None   # teacher targets (n, out_dim), unit; rows without one are 0
    t_p: RowTargets | None = None
    has_t: np.ndarray | None = None
    t_raw: tuple | None = None      # (pairs, 384-d query targets, 384-d passage targets)
    t_qf: RowTargets | None = None  # the teacher's own (384-d, unit) vectors per row, for its similarities
    t_pf: RowTargets | None = None
    tn_rows: np.ndarray | None = None  # a teacher-scored negative per row (common/teacher_negatives.py)
    t_nf: RowTargets | None = None
    t_n: RowTargets | None = None      # its target through the head's projection, like t_p
    has_tn: np.ndarray | None = None
    x_rows: np.ndarray | None = None   # more passages with a teacher target (attach_passages), no label
    x_t: np.ndarray | None = None      # their targets through the head's projection, unit

    def __len__(self):
        return len(self.q_rows)


def pca_basis(x: np.ndarray, k: int) -> np.ndarray:
    """(dim, k): the k leading right singular vectors of x (uncentred: cosine geometry)."""
    x = np.asarray(x, dtype=np.float64)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    if vt.shape[0] < k:
        raise ValueError(f"{len(x)} vectors cannot give {k} principal directions")
    return vt[:k].T.astype(np.float32)


def attach_teacher(ts: TrainSet, corpus: Corpus, max_pairs: int, device, log=print) -> np.ndarray:
    """Teacher embeddings for up to max_pairs of the set's (query, positive) pairs (chosen by a hash
    of the pair, the same for every training seed and for s07's subset of s04's pairs, so s07 and
    re-runs reuse the cache). Returns the raw 384-d passage targets (the head's starting projection)."""
    from . import teacher
    d = corpus.data_dir
    pairs = np.unique(np.stack([ts.qids, ts.pids], 1), axis=0)
    if len(pairs) > max_pairs:  # the pairs with the smallest hash: the same ones from any superset
        h = (pairs[:, 0].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ pairs[:, 1].astype(np.uint64)
        pairs = pairs[np.argsort(h, kind="stable")[:max_pairs]]
    qtext = _texts(d / "queries.parquet", "query", corpus.qidx)
    ptext = _texts(d / "passages.parquet", "text", corpus.pidx)
    tq = teacher.targets(d, "queries", pairs[:, 0], qtext, device, log)
    tp = teacher.targets(d, "passages", pairs[:, 1], ptext, device, log)
    ts.t_raw = (pairs, tq, tp)
    return tp


def attach_passages(ts: TrainSet, corpus: Corpus, n: int, basis: np.ndarray, device, log=print) -> int:
    """Teacher targets for up to n more of the training split's passages (beyond the distilled pairs'
    positives, chosen by a hash of the id: the same for every seed and for s07), each pulled towards
    the teacher's vector of its text like a positive: the passage tower learns from the teacher on
    more of the passages it will meet than the ~5k with a label. Returns how many."""
    from . import teacher
    d = corpus.data_dir
    q = corpus.queries
    cand = q["passage_ids"]  # Ragged: every question's candidates as one array
    in_train = np.repeat(np.asarray(q["split"]) == "train", np.diff(cand.offsets))
    ids = np.unique(np.asarray(cand.values, np.int64)[in_train])
    have = ts.t_raw[0][:, 1] if ts.t_raw is not None else np.zeros(0, np.int64)
    ids = ids[np.isin(ids, corpus.ptok.ids) & ~np.isin(ids, have)]
    h = ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    ids = ids[np.argsort(h, kind="stable")[:n]]
    if len(ids) == 0:
        return 0
    tx = teacher.targets(d, "passages", ids, _texts(d / "passages.parquet", "text", corpus.pidx), device, log)
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    ts.x_rows = np.asarray(corpus.pidx.rows(ids), np.int64)
    ts.x_t = np.ascontiguousarray(unit(tx @ basis), dtype=np.float32)
    log(f"teacher targets for {len(ids):,} more training passages (--distill-passages)")
    return len(ids)


def head_start(ts: TrainSet, corpus: Corpus, emb: np.ndarray, out_dim: int, encoder: str):
    """The projection P (dim of the teacher's space x out_dim) that the teacher's targets are seen
    through, and the head's starting weights (P transposed, when the word vectors live in the
    teacher's space, i.e. s03 --vectors minilm and the avg encoder; else None: random start).
    P comes from the teacher's passage targets, or without a teacher from the IDF-weighted means
    of the word vectors of training passages; (None, None) when there are fewer texts or dims
    than out_dim."""
    if ts.t_raw is not None:
        src = ts.t_raw[2]
    else:
        rows = np.unique(ts.p_rows)[:5000]
        idf = corpus.vocab.idf()
        src = np.zeros((len(rows), emb.shape[1]), np.float32)
        for n, r in enumerate(rows):
            tok = corpus.ptok.flat[corpus.ptok.offsets[r]:corpus.ptok.offsets[r + 1]]
            if len(tok):
                src[n] = idf[tok] @ np.asarray(emb[tok])
    if src.shape[1] < out_dim or len(src) < out_dim:  # too few texts or dims: a random head, no projection
        return None, None
    basis = pca_basis(src, out_dim)
    same_space = emb.shape[1] == src.shape[1] and encoder == "avg"
    return basis, (basis.T if same_space else None)


def project_teacher(ts: TrainSet, basis: np.ndarray):
    """Targets in the towers' space: unit(P t) for each training row whose pair was embedded."""
    pairs, tq, tp = ts.t_raw
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    at = {(int(q), int(p)): i for i, (q, p) in enumerate(pairs)}
    src = np.array([at.get((int(q), int(p)), -1) for q, p in zip(ts.qids, ts.pids)], dtype=np.int64)
    ts.has_t = src >= 0
    ts.t_q, ts.t_p = RowTargets(unit(tq @ basis), src), RowTargets(unit(tp @ basis), src)
    ts.t_qf, ts.t_pf = RowTargets(unit(tq), src), RowTargets(unit(tp), src)


def _texts(path, col: str, idx):
    """ids -> texts of a table whose rows are the token table's rows (s02 keeps the order), read
    one row group at a time (the whole text column of 10M passages would be GBs)."""
    def get(ids):
        rows = np.asarray(idx.rows(ids), np.int64)
        pf = pq.ParquetFile(path)
        starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
        group = np.searchsorted(starts, rows, side="right") - 1
        out = [None] * len(rows)
        for g in np.unique(group):
            sel = np.nonzero(group == g)[0]
            vals = pf.read_row_group(int(g), columns=[col])[col].take(pa.array(rows[sel] - starts[g])).to_pylist()
            for j, x in zip(sel, vals):
                out[j] = x
        return out
    return get


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
    q = corpus.labelled(split)
    qids, rel = q.qids, q.relevant
    n = len(corpus.ptok)
    if n <= pool_size:
        pool_rows = np.arange(n)
    else:
        rng = np.random.default_rng(seed)
        must = corpus.pidx.rows(np.fromiter((p for r in rel for p in r), dtype=np.int64))
        rest = rng.choice(n, size=pool_size, replace=False)
        pool_rows = np.unique(np.concatenate([must, rest]))
    return ValSet(corpus.qidx.rows(qids), rel, pool_rows, corpus.ptok.ids[pool_rows])


def validate(model: TwoTowerModel, corpus: Corpus, vs: ValSet, device) -> dict:
    pv = encode_rows(model, corpus.ptok, vs.pool_rows, "passage", device)
    qv = encode_rows(model, corpus.qtok, vs.q_rows, "query", device)
    idx, _ = search_exact(qv, pv, 100, device)
    ranked = vs.pool_ids[idx]
    return {"mrr@10": mrr_at_k(ranked, vs.relevant, 10), "recall@100": recall_at_k(ranked, vs.relevant, 100)}


def batch_loss(model, corpus, ts: TrainSet, b: np.ndarray, loss: str, device,
               temperature: float, margin: float, distill: float = 0.0, aux: dict | None = None,
               xb: np.ndarray | None = None):
    aux = aux or {}
    qi, ql = corpus.qtok.batch(ts.q_rows[b], model.max_tokens("query"))
    cand_rows = np.concatenate([ts.p_rows[b], ts.n_rows[b]])
    use_tn = ts.has_tn is not None and (aux.get("mmse") or aux.get("rel") or aux.get("neg_distill")) \
        and ts.has_tn[b].any()
    if use_tn:  # the teacher-scored negatives follow (rows without one repeat their positive, unused)
        cand_rows = np.concatenate([cand_rows, np.where(ts.has_tn[b], ts.tn_rows[b], ts.p_rows[b])])
    pi, pl = corpus.ptok.batch(cand_rows, model.max_tokens("passage"))
    t = lambda a: torch.from_numpy(a).to(device, non_blocking=True)
    with autocast(device):
        q = model.encode_query(t(qi), t(ql)).float()
        c = model.encode_passage(t(pi), t(pl)).float()
    B = len(b)
    extra = 0.0
    if distill and ts.has_t is not None and ts.has_t[b].any():
        h = t(ts.has_t[b])
        D = ts.t_q.shape[1]  # the semantic part (a lexical code, if any, follows it)
        cq = (F.normalize(q[:, :D], dim=-1) * t(ts.t_q[b])).sum(1)
        cp = (F.normalize(c[:B, :D], dim=-1) * t(ts.t_p[b])).sum(1)
        extra = distill * ((1 - cq)[h].mean() + (1 - cp)[h].mean())
    if xb is not None and len(xb):  # the passages with a target and no label (fit: only with distill)
        xi, xl = corpus.ptok.batch(ts.x_rows[xb], model.max_tokens("passage"))
        with autocast(device):
            cx = model.encode_passage(t(xi), t(xl)).float()
        D = ts.x_t.shape[1]
        extra = extra + distill * (1 - (F.normalize(cx[:, :D], dim=-1) * t(ts.x_t[xb])).sum(1)).mean()
    if aux.get("rel") or aux.get("mmse") or aux.get("neg_distill"):
        extra = extra + teacher_similarity_loss(q, c, ts, b, B, use_tn, aux, t)
    c = c[:2 * B]
    if loss == "triplet":
        pos = (q * c[:B]).sum(1)
        neg = (q * c[B:]).sum(1)
        return F.relu(margin - pos + neg).mean() + extra
    logits = q @ c.T / temperature
    cand_ids = np.concatenate([ts.pids[b], ts.nids[b]])
    # mask batch entries that are relevant to the query but are not its target
    same = (cand_ids[None, :] == ts.pids[b][:, None])
    same[:, :B] |= ts.qids[b][:, None] == ts.qids[b][None, :]
    same[np.arange(B), np.arange(B)] = False
    logits = logits.masked_fill(t(same), float("-inf"))
    return F.cross_entropy(logits, torch.arange(B, device=device)) + extra


def teacher_similarity_loss(q, c, ts: TrainSet, b, B: int, use_tn: bool, aux: dict, t):
    """Losses on the teacher's similarities (its own 384-d vectors), not on its vectors:
    - rel (relational distillation): for each query with a teacher target, KL(teacher || student)
      between softmaxes over the batch's candidates (the positives with a target, and the
      teacher-scored negatives when there are any): teacher cosines / rel_tau_t, the student's /
      rel_tau_s. No extra teacher cost: the targets are the ones `distill` uses.
    - mmse (margin-MSE): (s(q,p) - s(q,n) - (t(q,p) - t(q,n)))^2 for rows with a teacher-scored negative.
    - neg_distill: the pointwise distillation (1 - cos to the teacher's projected vector) on those negatives."""
    if ts.t_qf is None or not ts.has_t[b].any():
        return 0.0
    h = ts.has_t[b]
    tq, tp = t(ts.t_qf[b]), t(ts.t_pf[b])
    out = 0.0
    hn = ts.has_tn[b] & h if use_tn else np.zeros(B, bool)
    if aux.get("rel"):
        cols = [c[:B][t(h)]]
        tcols = [tp[t(h)]]
        if hn.any():
            cols.append(c[2 * B:][t(hn)])
            tcols.append(t(ts.t_nf[b])[t(hn)])
        sc, tc = torch.cat(cols), torch.cat(tcols)
        qs, tqs = q[t(h)], tq[t(h)]
        log_s = F.log_softmax(qs @ sc.T / aux["rel_tau_s"], dim=1)
        p_t = F.softmax(tqs @ tc.T / aux["rel_tau_t"], dim=1)
        out = out + aux["rel"] * F.kl_div(log_s, p_t, reduction="batchmean")
    if aux.get("mmse") and hn.any():
        m = t(hn)
        tn = t(ts.t_nf[b])
        s_margin = (q * c[:B]).sum(1) - (q * c[2 * B:]).sum(1)
        t_margin = (tq * tp).sum(1) - (tq * tn).sum(1)
        out = out + aux["mmse"] * ((s_margin - t_margin)[m] ** 2).mean()
    if aux.get("neg_distill") and hn.any():  # the pointwise pull, on the negatives' own targets
        D = ts.t_n.shape[1]
        cn = (F.normalize(c[2 * B:, :D], dim=-1) * t(ts.t_n[b])).sum(1)
        out = out + aux["neg_distill"] * (1 - cn)[t(hn)].mean()
    return out


def fit(model: TwoTowerModel, corpus: Corpus, ts: TrainSet, vs: ValSet, device, out_path: Path,
        epochs: int, batch_size: int, lr: float, lr_emb: float, loss: str = "triplet",
        margin: float = 0.2, seed: int = 0, run=None, meta: dict | None = None,
        patience: int = 0, start_mrr: float | None = None, log=print, distill: float = 0.0,
        aux: dict | None = None, lr_vectors: float | None = None, ddp=None, resume=None, on_saved=None):
    """Train; after each epoch validate and keep the best checkpoint at out_path.

    ddp: common.distributed.Dist under torchrun (None: one process): each rank trains on its share
    of every batch, gradients are reduced across ranks, rank 0 alone validates, saves and logs,
    and its decision to stop is broadcast. resume: a common.resume.Resume: the run's state is
    saved after each epoch and a matching one is picked up. on_saved(epoch): called on every rank
    after each epoch's state is saved."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model.to(device)
    sparse = model.sparse_parameters()
    opts = [torch.optim.Adam(model.dense_parameters(), lr=lr)]
    if sparse:
        vec = [p for p in sparse if p.shape[1] > 1]  # the word table (--train-emb); the rest: token weights
        groups = [{"params": [p for p in sparse if p.shape[1] == 1]}]
        if vec:
            groups.append({"params": vec, "lr": lr_vectors or lr_emb})
        opts.append(torch.optim.SparseAdam([g for g in groups if g["params"]], lr=lr_emb))
    temperature = model.config["temperature"]
    steps_per_epoch = max(1, math.ceil(len(ts) / batch_size))
    best = {"mrr@10": -1.0 if start_mrr is None else start_mrr, "epoch": -1}
    history = []
    since_best = 0
    main = ddp is None or ddp.main
    distributed.broadcast_params(ddp, model)
    first, stopped = 1, False
    got = resume.load(model, opts, rng, out_path, log) if resume is not None else None
    if got is not None:
        first, best, history, since_best, stopped = got["epoch"] + 1, got["best"], got["history"], \
            got["since_best"], got["stopped"]
        if main:
            log(f"resuming at epoch {first} ({resume.path}: {got['epoch']} epoch(s) done, "
                f"best MRR@10 {best['mrr@10']:.4f} at epoch {best['epoch']})")
            for rec in history:
                if run is not None:
                    run.log(rec)
    if ddp is not None and distributed.broadcast_floats(ddp, [first])[0] != first:
        raise RuntimeError("the processes disagree on the epoch to resume at")
    from tqdm import tqdm
    n_x = 0 if ts.x_rows is None or not distill else len(ts.x_rows)
    x_per_step = math.ceil(n_x / steps_per_epoch)
    for epoch in range(first, 1 if stopped else epochs + 1):
        model.train()
        perm = rng.permutation(len(ts))
        # the unlabelled passages, each once per epoch, from a stream of their own (the labelled
        # batches are the same draws with or without them)
        xperm = np.random.default_rng([seed, epoch]).permutation(n_x) if n_x else None
        t0, total = time.perf_counter(), 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False, mininterval=1,
                   disable=not main)
        for s in bar:
            g = perm[s * batch_size:(s + 1) * batch_size]
            if len(g) < 2:
                continue
            b, w = distributed.local_batch(ddp, g)  # one process: the whole batch, weight 1
            xb = None
            if n_x:
                xb = xperm[s * x_per_step:(s + 1) * x_per_step]
                xb = xb[ddp.rank::ddp.world_size] if ddp is not None else xb
            l = batch_loss(model, corpus, ts, b, loss, device, temperature, margin, distill, aux, xb)
            for o in opts:
                o.zero_grad(set_to_none=True)
            l.backward()
            if ddp is not None:
                distributed.reduce_gradients(ddp, model.dense_parameters(), sparse, w)
            for o in opts:
                o.step()
            total += l.item() * w
        bar.close()
        train_s = time.perf_counter() - t0
        stop = False
        if ddp is not None:
            total = distributed.sum_floats(ddp, [total])[0]
        if main:
            v = validate(model, corpus, vs, device)
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
                    stop = True
            if resume is not None:
                resume.save(model, opts, rng, epoch, best, history, since_best, stop, improved)
        if ddp is not None:  # rank 0's decisions, on every rank
            stop, best["mrr@10"], best["epoch"] = distributed.broadcast_floats(ddp, [stop, best["mrr@10"], best["epoch"]])
            stop, best["epoch"] = stop > 0, int(best["epoch"])
        if on_saved is not None:
            on_saved(epoch)
        if stop:
            break
    return best, history


def save_checkpoint(model: TwoTowerModel, path: Path, **extra):
    with atomic_path(path) as tmp:
        torch.save(model.checkpoint(**extra), tmp)
