"""Retrieval systems compared in s10 and offered by s09: dense (a checkpoint through its index,
or exact search when it has none), BM25, the untrained GloVe average, and hybrid (the fusion).

Hybrid: the candidates are the union of the dense top-`depth` (from the index) and the BM25
top-`depth`; each gets three exact scores, z-normalised over the candidates of its query:
    score = w_dense * z(cosine) + w_sem * z(semantic-part cosine) + (1 - w_dense - w_sem) * z(bm25)
The semantic part is the first out_dim dimensions of our vectors (GloVe through the learned head),
without the lexical sketch: BM25 already knows which words match, so what it gains most from is
a signal it lacks. The weights are tuned on the validation split by s10 (data/reports/hybrid.json).
"""
from __future__ import annotations

import numpy as np

from .artifacts import StageError
from .corpus import find_sorted

FUSION_DEPTH = 200            # each system's candidates that hybrid fuses (200 beat 100 and 50 on validation)
# BM25's top rows for a question, rescored by the model beside the graph's candidates in dense
# search through an index: a question's exact top 10 often share a rare word of it, scattered
# over the graph where its greedy search misses them, and an inverted index lists them directly.
# The model alone orders the union, so this only brings the ranking closer to exact search.
LEXICAL_CANDIDATES = 100
DEFAULT_WEIGHTS = (0.0, 0.35)  # hybrid's (cosine, semantic-part) weights until s10 tunes them


def lexical_rows(bm25, texts: list[str], k: int = 0, n: int = LEXICAL_CANDIDATES) -> list[np.ndarray]:
    """BM25's top max(k, n) rows for each text, for a dense search of the top k (rows of
    passages.parquet: the index's, check_aligned)."""
    return bm25.search_rows(list(texts), max(int(k), int(n)))[0]


def dense_index_run(index, qv: np.ndarray, k: int, batch: int = 500, extra: list | None = None):
    """Top-k passage ids and scores through a built index (common.index.dense.Index), as (n, k)
    arrays; extra: rows per query rescored beside the graph's candidates (lexical_rows)."""
    ids, sc = [], []
    for s in range(0, len(qv), batch):
        i, c = index.search_ids(qv[s:s + batch], k, extra=None if extra is None else extra[s:s + batch])
        ids += i
        sc += c
    return _pad(ids, sc, k)


def _pad(ids, sc, k):
    """Ragged lists -> (n, k) arrays; short rows padded with id 0 / score -inf."""
    I = np.zeros((len(ids), k), dtype=np.int64)
    S = np.full((len(ids), k), -np.inf, dtype=np.float32)
    for r, (i, s) in enumerate(zip(ids, sc)):
        I[r, :len(i)] = i[:k]
        S[r, :len(s)] = s[:k]
    return I, S


def dense_exact(pool_vecs: np.ndarray, pool_ids: np.ndarray, qv: np.ndarray, k: int, device="cpu"):
    from .exact import search_exact  # torch: imported by the stages that need it, never by s09
    # the pool as it is (float32 or float16): search_exact converts it a chunk at a time
    idx, sc = search_exact(np.asarray(qv, np.float32), pool_vecs, k, device)
    return pool_ids[idx], sc


def glove_average(emb: np.ndarray, table, rows: np.ndarray) -> np.ndarray:
    """Untrained baseline: plain mean of the GloVe vectors of each text's known words, unit length."""
    from .vocab import UNK
    out = np.zeros((len(rows), emb.shape[1]), dtype=np.float32)
    for n, r in enumerate(rows):
        toks = table.flat[table.offsets[r]:table.offsets[r + 1]]
        toks = toks[toks > UNK]
        if len(toks):
            out[n] = emb[toks].mean(0)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norm, 1e-9)


def rerank_candidates(score_fn, cand_lists: list[list[int]]):
    """The 'rerank the query's own candidates' setting: score_fn(query index, candidate ids) -> scores."""
    ids, sc = [], []
    for qi, cands in enumerate(cand_lists):
        s = np.asarray(score_fn(qi, cands), dtype=np.float32)
        order = np.argsort(-s, kind="stable")
        ids.append([cands[o] for o in order])
        sc.append([float(s[o]) for o in order])
    return ids, sc


def pool_matrix(n: int, dim: int, dtype, fill, path=None, chunk: int = 200_000) -> np.ndarray:
    """An (n, dim) matrix filled `chunk` rows at a time by fill(start, stop). With a path it is
    written there (atomically: a killed run leaves none) and returned memory-mapped, so its pages
    are the kernel's to drop rather than the stage's own memory; a complete file already there is
    reused."""
    if path is None:
        out = np.empty((n, dim), dtype)
        for s in range(0, n, chunk):
            out[s:s + chunk] = fill(s, min(s + chunk, n))
        return out
    from .artifacts import atomic_path
    from .index.vectors import VectorWriter
    try:
        got = np.load(path, mmap_mode="r")
        if got.shape == (n, dim) and got.dtype == np.dtype(dtype):
            return got
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, dim)).flush()
        w = VectorWriter(tmp)
        for s in range(0, n, chunk):
            w.write(s, fill(s, min(s + chunk, n)))
        w.close()
    return np.load(path, mmap_mode="r")


def encode_pool(model, corpus, device, progress=None, dtype=np.float32, path=None):
    """Every pool passage's vector, encoded in chunks into one `dtype` matrix (float16: half the
    memory, and the very values the index's vector file holds); with a path, on disk (pool_matrix)."""
    from .encode import encode_rows
    fill = lambda s, e: encode_rows(model, corpus.ptok, np.arange(s, e), "passage", device, progress=progress)
    return pool_matrix(len(corpus.ptok), model.dim, dtype, fill, path)


def _z(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 1e-12 else 1.0)


def _bm25_top(bm25, text: str, depth: int):
    """The query's BM25 hits (rows ascending, scores) and the rows of its top `depth`."""
    rows, vals = bm25.hits(text)  # the passages containing a query term
    k = min(depth, len(rows))
    top = np.argpartition(-vals, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
    return rows, vals, rows[top[vals[top] > 0]]


def _features(qv, V, out_dim, rows, vals, cand_rows):
    dense = V @ qv
    sem = V[:, :out_dim] @ qv[:out_dim]
    pos, found = find_sorted(rows, cand_rows)  # candidates without a query term score 0
    bm = np.where(found, vals[pos] if len(vals) else 0.0, 0.0)
    return np.stack([dense, sem, bm], axis=1)


def check_aligned(vector_row_ids: np.ndarray, bm25) -> None:
    """Hybrid works in rows: the index's vector file (rows of passages_tok) and BM25 (rows of
    passages.parquet) must list the passages in the same order, as s02 writes them."""
    if not np.array_equal(np.asarray(vector_row_ids), bm25.ids):
        raise StageError("the index and BM25 list the passages in different orders: re-run s02_tkn_ms_marco.py, "
                         "then s05_encode_docs_to_chromadb.py and s08_reencode_all.py")


def hybrid_features(qv: np.ndarray, d_rows, bm25, text: str, vecs, out_dim: int, depth: int = FUSION_DEPTH):
    """Candidates of one query (rows: the union of the dense rows and BM25's top `depth`) and their
    (cosine, semantic cosine, bm25) scores; vectors read from `vecs` (the memory-mapped vector file,
    or the pool's vectors), whose rows are BM25's (check_aligned)."""
    rows, vals, b_rows = _bm25_top(bm25, text, depth)
    cand = np.array(list(dict.fromkeys(np.concatenate([np.asarray(d_rows, np.int64), b_rows]).tolist())),
                    dtype=np.int64)
    if len(cand) == 0:
        return cand, np.zeros((0, 3))
    order = np.argsort(cand)  # ascending rows: fewer seeks in the mapped file
    V = np.empty((len(cand), vecs.shape[1]), np.float32)
    V[order] = vecs[cand[order]]
    return cand, _features(qv, V, out_dim, rows, vals, cand)


def hybrid_rank(cand: np.ndarray, feats: np.ndarray, w_dense: float, w_sem: float, k: int):
    if len(cand) == 0:
        return cand, np.zeros(0)
    w = np.array([w_dense, w_sem, 1.0 - w_dense - w_sem])
    score = np.stack([_z(feats[:, j]) for j in range(3)], axis=1) @ w
    order = np.argsort(-score, kind="stable")[:k]
    return cand[order], score[order]
