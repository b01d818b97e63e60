"""s10's evaluation: every system over the whole pool, side by side, with standard IR metrics."""
from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

import numpy as np

from . import bm25 as bm25_mod
from . import retrieval
from .artifacts import atomic_path, require, write_json
from .chunks import Chunks, ragged, unragged
from .corpus import find_sorted, labelled_questions, read_query_columns
from .encode import encode_rows, load_model
from .metrics import REPORTED, evaluate, ranked_to_run

from .retrieval import FUSION_DEPTH as DEPTH  # each system's run depth: what hybrid fuses
ALPHAS = [round(a, 2) for a in np.arange(0.0, 1.0001, 0.05)]
CHUNK = 1000  # questions per kept chunk of a system's run: a killed s10 resumes at the last finished one


class Evaluator:
    """Holds what every system needs for one data dir (its pool, queries, BM25, index)."""

    def __init__(self, data_dir: Path, model_dir: Path, corpus, device, use_index: bool = True, log=print,
                 bm25_params: dict | None = None, chroma_host: str | None = None, chroma_port: int = 8000,
                 keep: Path | None = None, chunk: int = CHUNK, on_saved=None):
        """keep: a folder where each system's run is kept chunk by chunk (`chunk` questions), so a
        killed evaluation resumes; on_saved(n) after each kept chunk (tests kill s10 there)."""
        self.d = Path(data_dir)
        self.keep, self.chunk, self.on_saved = (Path(keep) if keep else None), int(chunk), on_saved
        self._runs = {}  # each kept run, once loaded (s10 asks for some twice)
        self.model_dir = Path(model_dir)
        self.corpus = corpus
        self.device = device
        self.use_index, self.chroma_host, self.chroma_port = use_index, chroma_host, chroma_port
        self.log = log
        self.q = read_query_columns(self.d / "queries.parquet", ["split", "query_id", "query", "passage_ids", "is_selected"])
        self.bm25_params = bm25_mod.params(**(bm25_params or {}))
        self.bm25 = bm25_mod.load_or_build(self.d, log, **(bm25_params or {}))
        self._models, self._indexes, self._aligned, self._text_of = {}, {}, False, None

    # ------------------------------------------------------------ queries of a split
    def split(self, split: str, rerank: bool = False, part: str | None = None, max_queries: int = 0):
        """(query ids, texts, relevant sets, candidate lists) of the split's labelled questions;
        rerank: only those with at least two candidates; part, max_queries: see choose()."""
        q = labelled_questions(self.q, split, min_candidates=2 if rerank else 1)
        keep = choose(q.qids, part, max_queries)
        pick = lambda xs: [x for x, k in zip(xs, keep) if k]
        return q.qids[keep], pick(q.texts), pick(q.relevant), pick(q.candidates)

    # ------------------------------------------------------------ systems
    def _kept(self, what: str, key: dict, qids, compute):
        """compute(sel) -> dict of arrays (concatenable along axis 0) for the questions qids[sel],
        kept chunk by chunk under self.keep; the chunks already there are not computed again."""
        if self.keep is None or not len(qids):
            return compute(slice(None))
        qh = hashlib.sha1(np.asarray(qids, np.int64).tobytes()).hexdigest()[:12]
        folder = self.keep / f"{what}-{qh}"
        if folder not in self._runs:
            ch = Chunks(folder, dict(key, what=what, queries=qh, n=len(qids), chunk=self.chunk))
            starts = range(0, len(qids), self.chunk)
            parts = ch.run(len(starts), lambda i: compute(slice(starts[i], starts[i] + self.chunk)),
                           f"s10 {what}", self.log, self.on_saved)
            self._runs[folder] = {k: np.concatenate([x[k] for x in parts]) for k in parts[0]}
        return self._runs[folder]

    def clear_kept(self):
        """Once the reports are written: the kept chunks have served."""
        if self.keep is not None:
            import shutil
            shutil.rmtree(self.keep, ignore_errors=True)

    def _pool_path(self, what: str) -> Path | None:
        """Where a pool-sized matrix is kept on disk (under the keep folder, cleared with it), or
        None: in memory."""
        return None if self.keep is None else self.keep / f"pool-{what}-{self._pool_key[:12]}.npy"

    @cached_property
    def _pool_key(self) -> str:
        return require(self.d / "passages_tok.parquet")["fingerprint"]

    def model(self, ckpt_name: str):
        if ckpt_name not in self._models:
            path = self.model_dir / ckpt_name
            if not path.exists():
                self._models[ckpt_name] = None
            else:
                self._models[ckpt_name] = load_model(path, self.corpus.vocab.fingerprint, self.device)
        return self._models[ckpt_name]

    def index_for(self, ckpt: dict):
        """The checkpoint's complete index in this data dir, or None (then: exact search)."""
        if not self.use_index:
            return None
        if ckpt["fingerprint"] not in self._indexes:
            from .index import store
            self._indexes[ckpt["fingerprint"]] = store.find_built(self.d, ckpt["fingerprint"], self.chroma_host,
                                                                  self.chroma_port)
        return self._indexes[ckpt["fingerprint"]]

    def dense(self, ckpt_name: str, qids: np.ndarray, k: int = DEPTH):
        """(ids, scores, how) for a checkpoint; through its index (how: its backend) when it has a
        complete one, else exact search."""
        model, ckpt = self.model(ckpt_name)
        index = self.index_for(ckpt)
        qvec = lambda sel: encode_rows(model, self.corpus.qtok, self.corpus.qidx.rows(qids[sel]), "query", self.device)

        def compute(sel):
            if index is not None:  # as s09 searches: the graph's candidates and BM25's, rescored
                self._check_aligned()
                extra = retrieval.lexical_rows(self.bm25, self._texts(qids[sel]), k)
                ids, sc = retrieval.dense_index_run(index, qvec(sel), k, extra=extra)
            else:
                ids, sc = retrieval.dense_exact(self.pool_vectors(ckpt_name), self.corpus.ptok.ids, qvec(sel), k, self.device)
            return {"ids": ids, "sc": sc}
        key = {"model": ckpt["fingerprint"], "index": index.name if index is not None else "exact", "k": k,
               "pool": self._pool_key}
        if index is not None:
            key.update(lexical=retrieval.LEXICAL_CANDIDATES, params=self.bm25_params)
        got = self._kept(f"dense-{ckpt['fingerprint'][:12]}", key, qids, compute)
        return got["ids"], got["sc"], index.backend if index is not None else "exact"

    def dense_exact(self, ckpt_name: str, qids: np.ndarray, k: int = DEPTH):
        model, ckpt = self.model(ckpt_name)

        def compute(sel):
            qv = encode_rows(model, self.corpus.qtok, self.corpus.qidx.rows(qids[sel]), "query", self.device)
            ids, sc = retrieval.dense_exact(self.pool_vectors(ckpt_name), self.corpus.ptok.ids, qv, k, self.device)
            return {"ids": ids, "sc": sc}
        got = self._kept(f"exact-{ckpt['fingerprint'][:12]}", {"model": ckpt["fingerprint"], "k": k,
                                                                "pool": self._pool_key}, qids, compute)
        return got["ids"], got["sc"]

    def glove(self, qids: np.ndarray, k: int = DEPTH):
        def compute(sel):
            key = ("glove",)
            if key not in self._models:
                emb = self.glove_table()
                pool = retrieval.pool_matrix(
                    len(self.corpus.ptok), emb.shape[1], np.float32,
                    lambda s, e: retrieval.glove_average(emb, self.corpus.ptok, np.arange(s, e)),
                    self._pool_path(f"glove-{self.corpus.vocab.fingerprint[:12]}"))
                self._models[key] = (emb, pool)
            emb, pool = self._models[key]
            qv = retrieval.glove_average(emb, self.corpus.qtok, self.corpus.qidx.rows(qids[sel]))
            ids, sc = retrieval.dense_exact(pool, self.corpus.ptok.ids, qv, k, self.device)
            return {"ids": ids, "sc": sc}
        got = self._kept("glove", {"vocab": self.corpus.vocab.fingerprint, "k": k, "pool": self._pool_key},
                         qids, compute)
        return got["ids"], got["sc"]

    def glove_table(self) -> np.ndarray:
        """GloVe's vectors for the vocabulary (the baseline is GloVe's whatever s03's vectors are)."""
        if "glove_table" not in self._models:
            from . import glove
            v = self.corpus.vocab
            mat, _ = glove.vectors_for(v.glove_source or glove.DEFAULT, v.index, len(v))
            self._models["glove_table"] = mat
        return self._models["glove_table"]

    def bm25_run(self, texts, k: int = DEPTH, qids=None):
        """BM25's top k for each text (kept chunk by chunk when the questions' ids are given)."""
        if qids is None:
            return self.bm25.search(texts, k)

        def compute(sel):
            ids, sc = self.bm25.search(texts[sel], k)
            return {"ids": np.asarray(ids), "sc": np.asarray(sc)}
        got = self._kept("bm25", {"params": self.bm25_params, "k": k, "pool": self._pool_key}, qids, compute)
        return got["ids"], got["sc"]

    # ------------------------------------------------------------ rerank setting
    def rerank_scores(self, kind: str, texts, qids, cands, ckpt_name: str | None = None, weights=None):
        """Scores for each query's own candidates; kind: bm25 | glove | dense | hybrid."""
        bm = lambda i, c: self._bm25_for(texts[i], c)
        if kind == "bm25":
            return retrieval.rerank_candidates(bm, cands)
        if kind == "glove":
            emb = self.glove_table()
            qv = retrieval.glove_average(emb, self.corpus.qtok, self.corpus.qidx.rows(qids))
            fn = lambda i, c: retrieval.glove_average(emb, self.corpus.ptok, self.corpus.pidx.rows(c)) @ qv[i]
            return retrieval.rerank_candidates(fn, cands)
        model, _ = self.model(ckpt_name)
        qv = encode_rows(model, self.corpus.qtok, self.corpus.qidx.rows(qids), "query", self.device)
        dn = lambda i, c: encode_rows(model, self.corpus.ptok, self.corpus.pidx.rows(c), "passage", self.device) @ qv[i]
        if kind == "dense":
            return retrieval.rerank_candidates(dn, cands)

        out_dim = model.config["out_dim"]

        def hy(i, c):
            V = encode_rows(model, self.corpus.ptok, self.corpus.pidx.rows(c), "passage", self.device)
            f = np.stack([V @ qv[i], V[:, :out_dim] @ qv[i][:out_dim], bm(i, c)], axis=1)
            w = np.array([weights[0], weights[1], 1 - weights[0] - weights[1]])
            return np.stack([retrieval._z(f[:, j]) for j in range(3)], axis=1) @ w
        return retrieval.rerank_candidates(hy, cands)

    # ------------------------------------------------------------ hybrid
    def pool_vectors(self, ckpt_name: str):
        key = ("pool", ckpt_name)
        if key not in self._models:
            model, ckpt = self.model(ckpt_name)
            index = self.index_for(ckpt)
            if index is not None and index.vecs.shape == (len(self.corpus.ptok), model.dim):
                # the index's own vector file (memory-mapped): these very values, without encoding
                # the pool again (10M passages at v2.1 scale)
                self._models[key] = index.vecs
            else:
                # float16: half the memory (0.64 GB at 1M passages), the values an index's vector file holds
                self._models[key] = retrieval.encode_pool(model, self.corpus, self.device, dtype=np.float16,
                                                          path=self._pool_path(ckpt["fingerprint"][:12]))
        return self._models[key]

    def hybrid_features(self, ckpt_name: str, qids, texts, d_ids):
        """Per query: hybrid candidates and their (cosine, semantic cosine, BM25) scores. The
        candidates come from the index (dense top-DEPTH) and BM25; their vectors are the very ones
        stored in the index (the same encoder on the same tokens)."""
        model, ckpt = self.model(ckpt_name)
        self._check_aligned()

        def compute(sel):
            P = self.pool_vectors(ckpt_name)
            sub = np.arange(len(qids))[sel]
            qv = encode_rows(model, self.corpus.qtok, self.corpus.qidx.rows(qids[sel]), "query", self.device)
            cands, feats = [], []
            for j, n in enumerate(sub):
                pos, found = find_sorted(self.corpus.pidx.sorted, d_ids[n])  # (a short run's padding is no passage)
                rows = self.corpus.pidx.order[pos[found]]
                cand, f = retrieval.hybrid_features(qv[j], rows, self.bm25, texts[n], P, model.config["out_dim"], DEPTH)
                cands.append(self.corpus.ptok.ids[cand])
                feats.append(np.asarray(f))
            c, f = ragged(cands, np.int64), ragged(feats, feats[0].dtype if feats else np.float32)
            return {"ids": c["flat"], "n": c["lengths"], "f": f["flat"].reshape(-1, 3)}
        h = hashlib.sha1()
        for r in d_ids:  # the dense run the candidates come from (rows may differ in length)
            h.update(np.asarray(r, np.int64).tobytes() + b"|")
        key = {"model": ckpt["fingerprint"], "params": self.bm25_params, "pool": self._pool_key,
               "dense_run": h.hexdigest()[:12]}
        got = self._kept(f"hybrid-{ckpt['fingerprint'][:12]}", key, qids, compute)
        return list(zip(unragged(got["ids"], got["n"]), unragged(got["f"], got["n"])))

    def _check_aligned(self):
        if not self._aligned:
            retrieval.check_aligned(self.corpus.ptok.ids, self.bm25)
            self._aligned = True

    def _texts(self, qids) -> list[str]:
        """The texts of these question ids (queries.parquet)."""
        if self._text_of is None:
            self._text_of = dict(zip(self.q["query_id"].tolist(), self.q["query"].tolist()))
        return [self._text_of[int(q)] for q in qids]

    def _bm25_for(self, text, cands):
        return self.bm25.scores(text)[self.bm25.rows(cands)]


def _hash(qids) -> np.ndarray:
    """A fixed pseudo-random 64-bit number per query id (the same on every machine and run)."""
    x = np.asarray(qids, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(31))) * np.uint64(0x9E3779B97F4A7C15)
        return x ^ (x >> np.uint64(29))


def choose(qids, part: str | None = None, max_queries: int = 0) -> np.ndarray:
    """Which questions to use, by a hash of their ids: part "tune" / "report" are two disjoint
    halves (hybrid tuned on one, reported on the other, when both come from one split: v2.1's test
    split has no labels); max_queries > 0 keeps that many (a fixed sample, bounding s10's time at
    10M passages)."""
    h = _hash(qids)
    keep = np.ones(len(h), bool)
    if part is not None:
        keep &= (h & np.uint64(1)) == np.uint64(0 if part == "tune" else 1)
    if max_queries and keep.sum() > max_queries:
        order = np.argsort(h[keep], kind="stable")[:max_queries]
        idx = np.flatnonzero(keep)[order]
        keep = np.zeros(len(h), bool)
        keep[idx] = True
    return keep


def metrics_for(qids, rel, ids, scores) -> dict:
    run = ranked_to_run(qids, ids, scores)
    qrels = {str(q): {str(p): 1 for p in r} for q, r in zip(qids, rel)}
    return evaluate(run, qrels)


def recall_curve(ids: np.ndarray, rel, ks) -> list[float]:
    out = []
    for k in ks:
        hits = [len(set(np.asarray(row[:k]).tolist()) & r) / len(r) for row, r in zip(ids, rel)]
        out.append(float(np.mean(hits)) if hits else 0.0)
    return out


def hybrid_run(feats, w_dense: float, w_sem: float, k: int = DEPTH):
    ids, sc = [], []
    for cand, f in feats:
        i, s = retrieval.hybrid_rank(cand, f, w_dense, w_sem, k)
        ids.append(i.tolist())
        sc.append(s.tolist())
    return retrieval._pad(ids, sc, k)


TIE = 0.003  # validation MRR@10 this close to the best counts as a tie (see tune_hybrid)


def tune_hybrid(rel, feats) -> tuple[tuple[float, float], dict]:
    """(w_dense, w_sem) maximising MRR@10 on these queries, on a 0.05 grid. The curve is flat near
    its top (on the sample's 1,035 validation queries, dense weights spanning 0.1-0.2 lie within
    0.003, well inside the figure's standard error of ~0.01), so weights within TIE of the best are
    treated as tied, and the choice is the middle of the tied dense weights (pick_weights)."""
    from .metrics import mrr_at_k
    scores = {}
    for a in ALPHAS:
        for b in ALPHAS:
            if a + b <= 1.0 + 1e-9:
                ids, _ = hybrid_run(feats, a, b, 10)
                scores[(a, b)] = mrr_at_k(ids, rel, 10)
    return pick_weights(scores), scores


def pick_weights(scores: dict) -> tuple[float, float]:
    """Of the (w_dense, w_sem) within TIE of the best score, the one whose dense weight w_dense +
    w_sem lies nearest the middle of the tied dense weights' range (then the smaller w_dense, then
    the higher score). The middle of a flat top moves little with noise; its edge nearest a fixed
    prior (the even split, the rule until 2026-12-03) flipped between 0.5 and 0.55 across training
    seeds whose curves all peaked at 0.6-0.65. A flat curve everywhere still gives the even split."""
    top = max(scores.values())
    near = [k for k, v in scores.items() if v >= top - TIE]
    dense = [a + b for a, b in near]
    mid = (min(dense) + max(dense)) / 2
    return min(near, key=lambda x: (round(abs(x[0] + x[1] - mid), 6), x[0], -scores[x]))


def write_reports(out_dir: Path, name: str, result: dict, curves: dict, run=None) -> dict:
    """JSON, Markdown and a Recall@k PNG under out_dir; also logged to W&B when a run is given."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md", "png": out_dir / f"{name}_recall.png"}
    write_json(paths["json"], result)
    md = markdown(result)
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(md)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for sys_name, (ks, vals) in curves.items():
        ax.plot(ks, vals, label=sys_name)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("Recall@k")
    ax.set_title(f"Recall@k, {result['split']} split, whole pool ({result['pool']:,} passages)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(paths["png"]) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    if run is not None:
        try:
            import wandb
            cols = ["system", "search"] + list(REPORTED)
            rows = [[r["system"], r["search"]] + [r[m] for m in REPORTED] for r in result["full_pool"]]
            run.log({f"{name}/table": wandb.Table(columns=cols, data=rows),
                     f"{name}/recall_at_k": wandb.Image(str(paths["png"]))})
            run.log({f"{name}/{r['system']}/mrr@10": r["mrr@10"] for r in result["full_pool"]})
        except Exception as e:
            print(f"warning: could not log to W&B: {e}")
    return paths


def markdown(result: dict) -> str:
    cols = list(REPORTED)
    head = "| system | search | " + " | ".join(c.replace("@", "@") for c in cols) + " |\n"
    sep = "|---|---|" + "---:|" * len(cols) + "\n"
    lines = [f"### {result['split']} split: {result['queries']:,} queries, whole pool of {result['pool']:,} passages\n\n",
             head, sep]
    for r in result["full_pool"]:
        lines.append(f"| {r['system']} | {r['search']} | " + " | ".join(f"{r[c]:.4f}" for c in cols) + " |\n")
    if result.get("rerank"):
        lines.append(f"\n### rerank each query's own candidates ({result['rerank_queries']:,} queries)\n\n")
        lines += [head, sep]
        for r in result["rerank"]:
            lines.append(f"| {r['system']} | candidates | " + " | ".join(f"{r[c]:.4f}" for c in cols) + " |\n")
    if result.get("hybrid_weights") is not None:
        w = result["hybrid_weights"]
        lines.append(f"\nhybrid = {w['dense']} z(cosine) + {w['sem']} z(semantic-part cosine) + {w['bm25']} z(BM25) "
                     f"over the union of both top-{DEPTH}s; weights tuned on validation MRR@10.\n")
    if result.get("index_recall_at_10") is not None:
        lines.append(f"\nDense index ({result.get('index_backend', '')} HNSW over the short vectors, its top "
                     f"candidates rescored with the full ones) recall@10 against exact search, active model: "
                     f"{result['index_recall_at_10']:.4f}\n")
    return "".join(lines)

