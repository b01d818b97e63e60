"""Two-stage dense search: ChromaDB's HNSW over short vectors, exact scores from the full ones.

Why: HNSW insert and query time grow with the vectors' length, and ours are 320-d (64 semantic
dims + a 256-d lexical sketch, common/model.py). The sketch is a random projection with i.i.d.
coordinates, so its first L dims are themselves a (noisier) sketch of the same bag of stems. The
vector Chroma indexes is therefore

    index vector = unit( [ semantic ; lexical[:L] * sqrt(lex_dim / L) ] )     (index_dim = 64 + L)

(the factor keeps the two parts' balance), Chroma returns its top `depth` (default 100; from each
shard of a sharded index) and the full vectors rescore them exactly. The full vectors live beside the index as one float16 file in
passages_tok row order, memory-mapped (data/indexes/<name>.vectors.npy, with sorted ids for the
lookup); hybrid takes its features from the same file instead of asking Chroma for embeddings.

Measured on the shared sample (s07 model, validation, 18,531 passages, exact search in both
stages): full vectors MRR@10 0.7533; index_dim 192 alone 0.7184, then rescoring its top 100 0.7529
(top-10 overlap with full search 0.945), its top 200 0.7533 (0.978); index_dim 128 + top 100 0.7456.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .artifacts import StageError, atomic_path

INDEX_DIM = 192   # 64 semantic + 128 lexical dims in Chroma (the full vector is 320-d)
DEPTH = 100       # candidates from Chroma that the full vectors rescore


def check_index_dim(out_dim: int, lex_dim: int, index_dim: int):
    if lex_dim > 0 and index_dim < out_dim + lex_dim and index_dim <= out_dim:
        raise StageError(f"--index-dim {index_dim} must exceed the semantic part ({out_dim} dims)")


def index_vectors(x: np.ndarray, out_dim: int, lex_dim: int, index_dim: int) -> np.ndarray:
    """The short vectors Chroma indexes (unit length); x itself when index_dim covers it."""
    x = np.asarray(x, dtype=np.float32)
    if index_dim >= x.shape[1] or lex_dim <= 0:
        return x
    check_index_dim(out_dim, lex_dim, index_dim)
    keep = index_dim - out_dim
    y = np.concatenate([x[:, :out_dim], x[:, out_dim:out_dim + keep] * np.float32(np.sqrt(lex_dim / keep))], 1)
    return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)


# ------------------------------------------------------------------ the full vectors
def vectors_path(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / "indexes" / f"{name}.vectors.npy"


def ids_path(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / "indexes" / f"{name}.ids.npy"


def create_vector_file(data_dir: Path, name: str, ids: np.ndarray, dim: int, resume: bool):
    """The float16 (n, dim) file the build fills row by row (in place: a killed build keeps the rows
    it wrote, which the kernel holds even when the process is killed).
    Also writes the sorted ids and their rows, for lookups. Returns the file's path."""
    vp, ip = vectors_path(data_dir, name), ids_path(data_dir, name)
    vp.parent.mkdir(parents=True, exist_ok=True)
    if resume and vp.exists():
        try:
            mm = np.load(vp, mmap_mode="r")
            if mm.shape == (len(ids), dim) and mm.dtype == np.float16:
                return vp
        except (ValueError, OSError):
            pass
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    with atomic_path(ip) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.stack([ids[order], order.astype(np.int64)]))
    with atomic_path(vp) as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(ids), dim)).flush()
    return vp


class VectorWriter:
    """Writes rows of the vector file with pwrite, not through a memory map: mapped pages written
    by the build would count as the process's resident memory (6 GB at v2.1 scale)."""

    def __init__(self, path: Path):
        import os
        shape = np.load(path, mmap_mode="r").shape
        self.rows, self.dim = shape
        self.fd = os.open(path, os.O_RDWR)
        self.offset = os.fstat(self.fd).st_size - self.rows * self.dim * 2  # after the .npy header

    def write(self, start: int, vecs: np.ndarray):
        import os
        if start < 0 or start + len(vecs) > self.rows or vecs.shape[1] != self.dim:
            raise ValueError(f"rows {start}..{start + len(vecs)} x {vecs.shape[1]} do not fit {self.rows} x {self.dim}")
        os.pwrite(self.fd, np.ascontiguousarray(vecs, dtype=np.float16).tobytes(), self.offset + start * self.dim * 2)

    def close(self):
        import os
        os.fsync(self.fd)
        os.close(self.fd)


class FullVectors:
    """Full vectors by passage id, memory-mapped: opening costs nothing, a lookup reads its rows."""

    def __init__(self, data_dir: Path, name: str, rerun: str = "s08_reencode_all.py"):
        from .artifacts import damaged, load_npy_artifact
        vp, ip = vectors_path(data_dir, name), ids_path(data_dir, name)
        self.vecs = load_npy_artifact(vp, rerun, mmap_mode="r")  # a cut or foreign file: one line
        si = load_npy_artifact(ip, rerun, mmap_mode="r")
        if self.vecs.ndim != 2:
            raise damaged(vp, f"the wrong shape for the index {self.vecs.shape}", rerun)
        if si.ndim != 2 or si.shape != (2, self.vecs.shape[0]) or si.dtype != np.int64:
            raise damaged(ip, f"the wrong shape for the index ({si.shape} {si.dtype}, expected (2, "
                              f"{self.vecs.shape[0]:,}) int64)", rerun)
        self.sorted_ids, self.order = si[0], si[1]

    @property
    def row_ids(self) -> np.ndarray:
        """Passage id of each row (= each faiss label): the inverse of the sorted-id lookup."""
        if not hasattr(self, "_row_ids"):
            out = np.empty(len(self.sorted_ids), np.int64)
            out[np.asarray(self.order)] = self.sorted_ids
            self._row_ids = out
        return self._row_ids

    def rows(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """(rows, found) for int64 ids."""
        from .corpus import find_sorted
        pos, found = find_sorted(self.sorted_ids, ids)
        return np.asarray(self.order[pos]) if len(self.order) else pos, found

    def get(self, ids) -> np.ndarray:
        """float32 (len(ids), dim); zeros for an unknown id."""
        rows, found = self.rows(ids)
        out = np.zeros((len(rows), self.vecs.shape[1]), np.float32)
        if found.any():
            r = rows[found]
            srt = np.argsort(r)  # ascending rows: fewer seeks in the mapped file
            got = np.empty((len(r), self.vecs.shape[1]), np.float32)
            got[srt] = self.vecs[r[srt]]
            out[found] = got
        return out


# ------------------------------------------------------------------ the index s05..s10 query
class DenseIndex:
    """A built index: its HNSW graph (a faiss file, a Chroma collection or Chroma shards) and, when
    it has them, its full vectors.

    search(full query vectors, k) -> (ids, scores): Chroma's top `depth` by the index vectors,
    rescored with the full vectors (exact cosine of the model); without a full-vector file (an
    index built before they existed, or index_dim = dim) Chroma's own ranking and scores."""

    def __init__(self, col, state: dict, data_dir: Path):
        self.col = col
        self.state = state
        self.total = int(state.get("total") or 0)
        self.dim = int(state.get("dim") or 0)
        self.index_dim = int(state.get("index_dim") or self.dim)
        self.out_dim = int(state.get("out_dim") or 0)
        self.lex_dim = int(state.get("lex_dim") or 0)
        self.depth = int(state.get("depth") or DEPTH)
        self.full = None
        if state.get("full_vectors") and vectors_path(data_dir, state["name"]).exists():
            self.full = FullVectors(data_dir, state["name"])
            if self.total and self.dim and self.full.vecs.shape != (self.total, self.dim):
                raise StageError(f"{vectors_path(data_dir, state['name'])} is the wrong shape for the index "
                                 f"({self.full.vecs.shape}, expected ({self.total:,}, {self.dim})): "
                                 f"re-run s08_reencode_all.py")
        elif self.index_dim < self.dim:
            raise StageError(f"{vectors_path(data_dir, state['name'])} is missing: re-run s08_reencode_all.py")

    def count(self) -> int:
        return self.col.count()

    def query_vectors(self, q: np.ndarray) -> np.ndarray:
        return index_vectors(q, self.out_dim, self.lex_dim, self.index_dim) if self.index_dim < self.dim else \
            np.asarray(q, np.float32)

    def search(self, q: np.ndarray, k: int, depth: int | None = None):
        """Top-k per query: (ids as int64 lists, cosine scores as float lists)."""
        q = np.asarray(q, dtype=np.float32)
        if self.by_rows:
            rows, sc = self.search_rows(q, k, depth)
            return [self.full.row_ids[r].tolist() for r in rows], [s.astype(float).tolist() for s in sc]
        k = max(1, min(int(k), self.total or self.col.count()))
        n = min(max(k, depth or self.depth), self.total or self.col.count()) if self.full is not None else k
        # With the full vectors, Chroma's distances are not needed: every candidate (each shard's
        # top n) is rescored
        r = self.col.query(query_embeddings=self.query_vectors(q), n_results=n,
                           include=["distances"] if self.full is None else [])
        ids = [row if isinstance(row, np.ndarray) else np.array([int(x) for x in row], dtype=np.int64)
               for row in r["ids"]]  # Chroma's ids are strings; faiss_index gives int64 arrays
        if self.full is None:
            return [i.tolist() for i in ids], [[1.0 - float(d) for d in row] for row in r["distances"]]
        out_ids, out_sc = [], []
        for qi, cand in enumerate(ids):
            s = self.full.get(cand) @ q[qi]
            top = np.argsort(-s, kind="stable")[:k]
            out_ids.append(cand[top].tolist())
            out_sc.append(s[top].astype(float).tolist())
        return out_ids, out_sc

    @property
    def by_rows(self) -> bool:
        """The graph answers with rows of the vector file (faiss): no id lookups on the way."""
        return self.full is not None and hasattr(self.col, "query_rows")

    def search_rows(self, q: np.ndarray, k: int, depth: int | None = None):
        """search() in rows of the vector file (faiss backend only): (rows, scores) per query, as
        arrays. Skips two lookups in the sorted ids (1M ids: ~0.3 ms each, the cache being cold
        after the graph search)."""
        q = np.asarray(q, dtype=np.float32)
        k = max(1, min(int(k), self.total))
        cand = self.col.query_rows(self.query_vectors(q), min(max(k, depth or self.depth), self.total))
        out_rows, out_sc = [], []
        for qi, r in enumerate(cand):
            r = np.sort(r)  # ascending rows: fewer seeks in the mapped file
            s = np.asarray(self.full.vecs[r], dtype=np.float32) @ q[qi]
            top = np.argsort(-s, kind="stable")[:k]
            out_rows.append(r[top])
            out_sc.append(s[top])
        return out_rows, out_sc

    def vectors(self, ids) -> np.ndarray:
        """The passages' full vectors (float32; zeros for unknown ids)."""
        ids = [int(i) for i in ids]
        if self.full is not None:
            return self.full.get(ids)
        got = self.col.get(ids=[str(i) for i in ids], include=["embeddings"])
        m = {k: v for k, v in zip(got["ids"], got["embeddings"])}
        return np.stack([np.asarray(m[str(i)], np.float32) if str(i) in m else np.zeros(self.dim, np.float32)
                         for i in ids]) if ids else np.zeros((0, self.dim), np.float32)

    def documents(self, ids) -> list[str]:
        got = self.col.get(ids=[str(int(i)) for i in ids], include=["documents"])
        m = dict(zip(got["ids"], got["documents"]))
        return [m.get(str(int(i))) or "" for i in ids]

    def warm_up(self):
        """The first query loads the HNSW graph from disk (about a second at 1M passages)."""
        self.col.query(query_embeddings=np.full((1, self.index_dim), 0.1, np.float32), n_results=1,
                       include=["distances"])
