"""A built index as s06, s09 and s10 query it: its graph's candidates, rescored with the full vectors.

search(query vectors, k) -> (rows, scores) per query, rows of data/passages_tok.parquet; ids(rows)
turns rows into passage ids, the one place where that happens.
"""
from __future__ import annotations

import numpy as np

from ..artifacts import DamagedInput
from .graph import Graph
from .vectors import DEPTH, FullVectors, index_vectors


class Index:
    def __init__(self, graph: Graph, state: dict, full: FullVectors):
        self.graph, self.state, self.full = graph, state, full
        self.name = state["name"]
        self.backend = state["backend"]
        self.total = int(state["total"])
        self.dim = int(state.get("dim") or full.vecs.shape[1])
        self.index_dim = int(state.get("index_dim") or self.dim)
        self.out_dim = int(state.get("out_dim") or 0)
        self.lex_dim = int(state.get("lex_dim") or 0)
        self.depth = int(state.get("depth") or DEPTH)
        if full.vecs.shape != (self.total, self.dim):
            raise DamagedInput(full.path, f"the wrong shape for the index ({full.vecs.shape}, expected "
                                          f"({self.total:,}, {self.dim}))", "s08_reencode_all.py")

    @property
    def vecs(self) -> np.ndarray:
        """The full vectors, one row per passage (float16, memory-mapped)."""
        return self.full.vecs

    @property
    def row_ids(self) -> np.ndarray:
        return self.full.row_ids

    def ids(self, rows) -> np.ndarray:
        return self.full.row_ids[np.asarray(rows, np.int64)]

    def count(self) -> int:
        return self.total

    def query_vectors(self, q: np.ndarray) -> np.ndarray:
        return index_vectors(q, self.out_dim, self.lex_dim, self.index_dim)

    def search(self, q: np.ndarray, k: int, depth: int | None = None,
               extra: list | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Top-k per query: (rows, cosine scores) as arrays, best first. The graph's top `depth`
        (from each of its shards), and extra[i]'s rows for query i when given (common/retrieval.py:
        BM25's top rows for the question), rescored exactly with the full vectors."""
        q = np.asarray(q, dtype=np.float32)
        k = max(1, min(int(k), self.total))
        cand = self.graph.search(self.query_vectors(q), min(max(k, depth or self.depth), self.total))
        out_rows, out_sc = [], []
        for qi, r in enumerate(cand):
            if extra is not None:
                r = np.concatenate([np.asarray(r, np.int64), np.asarray(extra[qi], np.int64)])
            r = np.unique(np.asarray(r, np.int64))  # ascending rows: fewer seeks in the mapped file
            s = np.asarray(self.full.vecs[r], dtype=np.float32) @ q[qi]
            top = np.argsort(-s, kind="stable")[:k]
            out_rows.append(r[top])
            out_sc.append(s[top])
        return out_rows, out_sc

    def search_ids(self, q: np.ndarray, k: int, depth: int | None = None, extra: list | None = None):
        """search() with passage ids: (ids, scores) per query, as arrays."""
        rows, sc = self.search(q, k, depth, extra)
        return [self.ids(r) for r in rows], sc

    def warm_up(self):
        self.graph.warm_up(self.index_dim)

    def close(self):
        self.graph.close()
