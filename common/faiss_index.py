"""The passage index as a faiss HNSW graph: the default backend of a local build (--backend faiss).

Why not Chroma's own HNSW: s05 builds the same graphs (M 16, ef_construction 100, the 192-d index
vectors of common/dense_index.py) in 0.50 CPU-ms per passage with faiss against 0.98 with Chroma,
which logs every vector in SQLite before its bundled hnswlib inserts it; and at 1M passages two
faiss graphs searched in parallel answer in 1.68 ms against 4.02 ms for Chroma's two shards,
finding more of the exact top 10 (0.939 against 0.926; bench/hnsw/README.md).
Chroma stays available: --backend chroma, and always with --chroma-host.

Files, beside the vector files of common/dense_index.py in data/indexes/:
    <name>.faiss       the graph: IndexHNSWFlat, inner product over unit index vectors (= cosine);
                       labels are rows of passages_tok, which the ids file maps to passage ids
                       (<name>.<i>of<n>.faiss for shard i of n: rows shard_bounds(total, n)[i])
    <name>.faiss.part  the graph so far while it is built, saved every --save-every passages with
                       the progress file: a killed build resumes from it (never queried)
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from .artifacts import StageError, atomic_path, write_json

SAVE_EVERY = 250_000   # passages between saves of the partial graph (a save of 1M passages: ~2 s)
ADD_BATCH = 50_000     # rows per faiss add: its threads wait for each other at the end of every add,
                       # so small adds cost (1M passages on 2 cores: 3,596/s in adds of 5,000, 4,146/s
                       # in adds of 20,000)


def shard_bounds(total: int, shards: int) -> list[tuple[int, int]]:
    return [(i * total // shards, (i + 1) * total // shards) for i in range(shards)]


def auto_shards(total: int) -> int:
    """One graph per core from 200k passages (at most 4), one below. A query searches the graphs in
    parallel threads, and smaller graphs find more of the exact neighbours for the same ef_search:
    at 1M passages on 2 cores, two graphs at ef_search 300 find as much as one at 800 in half the time
    (bench/README.md)."""
    from .cli import usable_cores
    from .vector_store import SMALL_INDEX
    return 1 if total < SMALL_INDEX else min(4, usable_cores())


def graph_path(data_dir: Path, name: str, i: int = 0, shards: int = 1) -> Path:
    return Path(data_dir) / "indexes" / (f"{name}.faiss" if shards == 1 else f"{name}.{i}of{shards}.faiss")


def index_path(data_dir: Path, name: str) -> Path:
    return graph_path(data_dir, name)


def partial_path(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / "indexes" / f"{name}.faiss.part"


def _faiss():
    if sys.platform == "darwin":
        # macOS wheels of torch and faiss-cpu each bundle libomp; the second one to start aborts the
        # process (OMP Error #15) unless told to share, and faiss's parallel kernels can then crash:
        # the known workaround is this variable and one faiss thread (faiss-wheels issue #73)
        os.environ.setdefault("KMP_DUPLICATE_LIB_OK", "TRUE")
    try:
        import faiss
    except ImportError as e:  # requirements.txt has it: a broken or foreign environment
        raise StageError(f"faiss is not installed ({e}): run ./setup_env.sh, or pass --backend chroma")
    return faiss


def _threads() -> int:
    """faiss's OpenMP threads for a build: every core this process may use (one on macOS, above)."""
    from .cli import usable_cores
    return 1 if sys.platform == "darwin" else usable_cores()


def _write(index, path: Path):
    """Atomically: a killed save leaves the previous file, never half of one."""
    faiss = _faiss()
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def build(data_dir: Path, name: str, meta: dict, total: int, batches, hnsw: dict, progress=None,
          log=print, progress_path: Path | None = None, save_every: int = SAVE_EVERY,
          kill_env: str | None = None, shards: int = 1) -> dict:
    """Fill the graph(s) of index `name` from `batches(start_row)`, an iterator of (ids, index
    vectors, _) from row `start_row` on, resuming a killed build of the same index. Shard i holds
    rows shard_bounds(total, shards)[i], built one after the other with all cores. Returns its state
    (the progress file's content)."""
    faiss = _faiss()
    d = Path(data_dir)
    pp = progress_path
    bounds = shard_bounds(total, shards)
    paths = [graph_path(d, name, i, shards) for i in range(shards)]
    part = partial_path(d, name)
    from .vector_store import read_progress
    state = read_progress(pp)
    same = state is not None and all(state.get(k) == meta.get(k) for k in meta) and state.get("total") == total \
        and int(state.get("shards", 1)) == shards
    if same and state.get("complete") and all(p.exists() for p in paths):
        log(f"index {name} is already complete ({total:,} passages)")
        return state

    def new_graph():
        g = faiss.IndexHNSWFlat(int(meta["index_dim"]), int(hnsw["max_neighbors"]), faiss.METRIC_INNER_PRODUCT)
        g.hnsw.efConstruction = int(hnsw["ef_construction"])
        return g

    start, graph = 0, None
    if same and state.get("done") == total and all(p.exists() for p in paths):  # killed just before the end
        state["complete"] = True
        write_json(pp, state)
        return state
    if same and state.get("done"):
        done = int(state["done"])
        cur = next(i for i, (lo, hi) in enumerate(bounds) if lo <= done < hi or (hi == total and done == total))
        start = bounds[cur][0]  # at worst, the current shard starts again
        if all(paths[i].exists() for i in range(cur)):
            if done > start and part.exists():
                try:
                    g = faiss.read_index(str(part))
                    if g.ntotal == done - start:
                        graph, start = g, done
                except RuntimeError:
                    pass  # damaged: this shard starts again
        else:
            start = 0
    if start == 0 and graph is None:
        for p in (*paths, part):
            p.unlink(missing_ok=True)
        state = dict(meta, name=name, total=total, done=0, complete=False, backend="faiss", shards=shards,
                     hnsw=dict(hnsw))
        write_json(pp, state)
    else:
        state["done"] = start
        write_json(pp, state)
        log(f"resuming {name} at passage {start:,} of {total:,}")
    graph = graph or new_graph()
    cur = next(i for i, (lo, hi) in enumerate(bounds) if lo <= start < hi) if start < total else shards - 1
    faiss.omp_set_num_threads(_threads())
    if progress is not None:
        progress.update(start)
    kill_after = int(os.environ.get(kill_env) or 0) if kill_env else 0
    saves = [0]
    buf: list = []
    step = max(1, min(ADD_BATCH, int(save_every)))

    def saved(done: int):
        state["done"] = done
        write_json(pp, state)  # progress only once the graph it counts is on disk
        saves[0] += 1
        if kill_after and saves[0] >= kill_after:  # test hook: a build killed part-way
            os.kill(os.getpid(), signal.SIGKILL)

    def add():
        if buf:
            graph.add(np.ascontiguousarray(np.concatenate(buf), dtype=np.float32))  # label = row - lo
            buf.clear()

    pos = start
    for _ids, vecs, _docs in batches(start):
        if progress is not None:
            progress.update(len(vecs))
        while len(vecs):
            lo, hi = bounds[cur]
            take = min(len(vecs), hi - pos)
            buf.append(vecs[:take])
            vecs, pos = vecs[take:], pos + take
            if pos == hi:  # this shard is complete
                add()
                if graph.ntotal != hi - lo:
                    raise StageError(f"index {name} shard {cur} holds {graph.ntotal:,} passages, expected "
                                     f"{hi - lo:,}: re-run this stage")
                _write(graph, paths[cur])
                part.unlink(missing_ok=True)
                saved(hi)
                cur, graph = min(cur + 1, shards - 1), new_graph()
            elif sum(len(b) for b in buf) >= step:
                add()
                if lo + graph.ntotal - state["done"] >= save_every:
                    _write(graph, part)
                    saved(lo + graph.ntotal)
    if state["done"] != total:
        pp.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
        raise StageError(f"index {name} got {pos:,} passages, expected {total:,}: re-run this stage")
    state.update(done=total, complete=True)
    write_json(pp, state)
    return state


class FaissIndex:
    """A built index's graphs, queried like a Chroma collection (query/count) by DenseIndex: each
    graph in its own thread (faiss releases the GIL), their candidates together. The graphs are read
    on first use (0.65 s at 1M passages), so s09's prompt appears while they load in the background."""

    def __init__(self, data_dir: Path, name: str, total: int, ef_search: int, shards: int = 1):
        self.bounds = shard_bounds(int(total), int(shards))
        self.paths = [graph_path(data_dir, name, i, shards) for i in range(shards)]
        for p in self.paths:
            if not p.exists():
                raise StageError(f"{p} is missing: re-run s05_encode_docs_to_chromadb.py (or s08_reencode_all.py)")
        self.data_dir, self.name, self.total, self.ef_search = Path(data_dir), name, int(total), int(ef_search)
        self._graphs, self._ids, self._pool = None, None, None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._graphs is None:
                faiss = _faiss()
                if sys.platform == "darwin":
                    faiss.omp_set_num_threads(1)
                graphs = []
                for p, (lo, hi) in zip(self.paths, self.bounds):
                    g = faiss.read_index(str(p))
                    if g.ntotal != hi - lo:
                        raise StageError(f"{p} holds {g.ntotal:,} passages, expected {hi - lo:,}: re-run s08_reencode_all.py")
                    g.hnsw.efSearch = self.ef_search
                    graphs.append(g)
                from .dense_index import FullVectors
                self._ids = FullVectors(self.data_dir, self.name).row_ids  # for query()'s ids
                if len(graphs) > 1:
                    from concurrent.futures import ThreadPoolExecutor
                    self._pool = ThreadPoolExecutor(len(graphs), thread_name_prefix="graph")
                self._graphs = graphs
        return self._graphs

    def count(self) -> int:
        return self.total

    def query_rows(self, query_embeddings, n_results: int) -> list[np.ndarray]:
        """Every graph's top n_results rows together, per query (the caller rescores them)."""
        out = self.query(query_embeddings, n_results, [], as_rows=True)
        return out["ids"]

    def query(self, query_embeddings, n_results: int, include: list, as_rows: bool = False):
        """Chroma's answer shape: {"ids": [int64 arrays]}, every graph's top n_results together (the
        caller rescores them); with "distances" (cosine distance), merged into one top n_results."""
        graphs = self._graphs or self._load()
        q = np.ascontiguousarray(query_embeddings, dtype=np.float32)

        def ask(i):
            lo, hi = self.bounds[i]
            sims, rows = graphs[i].search(q, int(min(n_results, hi - lo)))
            return sims, np.where(rows >= 0, rows + lo, -1)  # -1: fewer hits than asked for
        parts = [ask(0)] if self._pool is None else list(self._pool.map(ask, range(len(graphs))))
        sims = np.concatenate([p[0] for p in parts], axis=1)
        rows = np.concatenate([p[1] for p in parts], axis=1)
        if "distances" in include and len(parts) > 1:
            top = np.argsort(-sims, axis=1, kind="stable")[:, :n_results]
            sims, rows = np.take_along_axis(sims, top, 1), np.take_along_axis(rows, top, 1)
        keep = [r >= 0 for r in rows]
        out = {"ids": [r[m] if as_rows else self._ids[r[m]] for r, m in zip(rows, keep)]}
        if "distances" in include:
            out["distances"] = [(1.0 - s[m]).tolist() for s, m in zip(sims, keep)]
        return out

    def get(self, ids, include: list):
        raise StageError("a faiss index stores no documents or embeddings: rebuild with --backend chroma for that")


def drop(data_dir: Path, name: str):
    for p in (*Path(data_dir, "indexes").glob(f"{name}.*faiss"), partial_path(data_dir, name)):
        p.unlink(missing_ok=True)
