"""The interface every index backend implements, and what the backends share.

An index is a progress file data/indexes/<name>.json (its state), the vector files of
common/index/vectors.py, and one or more HNSW graphs over the short index vectors, kept by a backend:

    common/index/faiss_graph.py   faiss files in data/indexes (the default)
    common/index/chroma_graph.py  ChromaDB collections (embedded store or a Chroma server)

A backend module provides
    NAME                                   "faiss" / "chroma", written in every index's state
    build(job: BuildJob, source) -> state  fill the graph(s) from source, resuming a killed build
    open_graph(data_dir, state, rows_of, **kw) -> Graph
    files(data_dir, state) -> [Path]       its files that never change once the index is complete
    drop(data_dir, state)                  delete its graph(s)
    auto_shards(total, job) -> int         how many graphs it builds when not told
and a Graph answers in rows of data/passages_tok.parquet: passage ids are applied once, at the
edge (common/index/dense.py's Index.ids).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

# HNSW build settings (both backends). ef_construction 100 keeps recall on our vectors; fewer
# builds faster but loses more of the exact top 10 (bench/README.md).
HNSW = {"space": "cosine", "ef_construction": 100, "max_neighbors": 16, "ef_search": 300}
# Below this many passages an index is one graph, searched with a higher ef_search (small graphs
# answer in a few ms even so, and find more of the exact top 10).
SMALL_INDEX = 200_000
EF_SEARCH_SMALL = 800
SAVE_EVERY = 250_000  # passages between saves of a partial faiss graph (a killed build resumes there)


# faiss float32 graphs from SMALL_INDEX passages link each passage to twice as many neighbours: on
# trained models' vectors M 16 misses too much of the exact top 10 there (README, Speed). sq8
# graphs (v2.1 scale) keep M 16 until measured; small graphs find it all with M 16.
MAX_NEIGHBORS_LARGE_FLAT = 32


def auto_max_neighbors(total: int, faiss_codes: str | None) -> int:
    """HNSW M when none is asked for: faiss_codes is "flat" or "sq8" for a faiss graph, None for Chroma."""
    return MAX_NEIGHBORS_LARGE_FLAT if faiss_codes == "flat" and total >= SMALL_INDEX else HNSW["max_neighbors"]


def auto_ef_search(total: int) -> int:
    return HNSW["ef_search"] if total >= SMALL_INDEX else EF_SEARCH_SMALL


def shard_bounds(total: int, shards: int) -> list[tuple[int, int]]:
    """Rows [lo, hi) of each of `shards` graphs."""
    return [(i * total // shards, (i + 1) * total // shards) for i in range(shards)]


class Graph:
    """A built index's graph(s). search() gives each graph's top n rows for every query (the caller
    rescores them with the full vectors, so the graph's own scores are not needed)."""

    def search(self, vecs: np.ndarray, n: int) -> list[np.ndarray]:
        raise NotImplementedError

    def warm_up(self, dim: int):
        """Load what the first query would (the graphs are read lazily); dim: the index vectors' length."""

    def close(self):
        """Release threads and clients."""


@dataclass
class BuildJob:
    """What a backend's build() is told: which index, its settings, where its progress goes, and
    callbacks. on_saved(done) runs after each batch or partial graph is safely recorded (tests use
    it to kill a build part-way)."""
    data_dir: Path
    name: str
    meta: dict                     # what makes this index this index (model, vocab, dims...)
    total: int
    hnsw: dict                     # build settings (ef_construction, max_neighbors[, ef_search])
    progress_path: Path
    shards: int = 1
    save_every: int = SAVE_EVERY
    options: dict = field(default_factory=dict)  # the backend's own settings (see its module)
    log: Callable = print
    progress: object = None        # a tqdm bar (update(n)) or None
    on_saved: Callable | None = None
