"""The faiss backend (the default): each graph an IndexHNSWFlat file in data/indexes.

Why faiss by default: it builds the same graphs (M 16, ef_construction 100) in about half the CPU
time of Chroma's hnswlib, which also logs every vector in SQLite first, and answers faster with
as good recall (bench/README.md). This is the only module that imports faiss.

The graph holds each index vector minus a centre (the mean of a sample of them, in the index's
state): inner products with the query then differ from the true ones by q.centre, the same for
every passage, so the ranking is unchanged, while the vectors no longer sit in one narrow cone
(a trained model's passage vectors do: mean cosine to their mean ~0.9), where HNSW's greedy search
finds few of the true neighbours (bench/README.md).

What the graph stores of each vector (`codes`, in the index's state): "flat" (float32, IndexHNSWFlat)
or "sq8" (8-bit scalar-quantised, IndexHNSWSQ: a quarter of the bytes, for 10M passages), its
per-dimension ranges trained on the centring sample and kept in the state, so every shard and a
resumed build quantise alike. Either way the graph only proposes candidates: the float16 full
vectors rescore them (common/index/dense.py), so its coarser scores cost little recall.

Files, beside the vector files of common/index/vectors.py in data/indexes/:
    <name>.faiss       the graph: inner product over unit index vectors (= cosine); labels are rows
                       of passages_tok (<name>.<i>of<n>.faiss for shard i of n: rows
                       shard_bounds(total, n)[i], labels counted from the shard's first row)
    <name>.faiss.part  the graph so far while it is built, saved every --save-every passages with
                       the progress file: a killed build resumes from it (never queried)
"""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np

from ..artifacts import BadInstall, DamagedInput, MissingInput, atomic_path
from .graph import SMALL_INDEX, BuildJob, Graph, shard_bounds
from .state import BuildIncomplete, read_progress, same_build, write_json

NAME = "faiss"
ADD_BATCH = 50_000  # rows per faiss add: its threads wait for each other at the end of every add, so small adds cost
CODES = ("flat", "sq8")
SQ8_FROM = 2_000_000  # passages from which auto builds sq8 graphs (README, Speed, "v2.1 scale")


def auto_codes(total: int) -> str:
    return "sq8" if total >= SQ8_FROM else "flat"


def train_sq8(x: np.ndarray) -> list[float]:
    """The 8-bit quantiser's per-dimension ranges (faiss's `trained` vector) from sample vectors."""
    faiss = _faiss()
    q = faiss.IndexScalarQuantizer(x.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    q.train(np.ascontiguousarray(x, dtype=np.float32))
    return [float(v) for v in faiss.vector_to_array(q.sq.trained)]


def make_graph(dim: int, max_neighbors: int, ef_construction: int, codes: str = "flat", sq_trained=None):
    """An empty HNSW graph (inner product) of these codes; sq8 with its ranges from train_sq8."""
    faiss = _faiss()
    if codes == "sq8":
        g = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, max_neighbors, faiss.METRIC_INNER_PRODUCT)
        codec = faiss.downcast_index(g.storage)
        faiss.copy_array_to_vector(np.asarray(sq_trained, np.float32), codec.sq.trained)
        codec.is_trained = g.is_trained = True
    else:
        g = faiss.IndexHNSWFlat(dim, max_neighbors, faiss.METRIC_INNER_PRODUCT)
    g.hnsw.efConstruction = ef_construction
    return g


def auto_shards(total: int, job: BuildJob | None = None) -> int:
    """One graph per core from 200k passages (at most 4), one below. A query searches the graphs in
    parallel threads, and smaller graphs find more of the exact neighbours for the same ef_search:
    at 1M passages on 2 cores, two graphs at ef_search 300 find as much as one at 800 in half the time
    (bench/README.md)."""
    from ..cli import usable_cores
    return 1 if total < SMALL_INDEX else min(4, usable_cores())


def graph_path(data_dir: Path, name: str, i: int = 0, shards: int = 1) -> Path:
    return Path(data_dir) / "indexes" / (f"{name}.faiss" if shards == 1 else f"{name}.{i}of{shards}.faiss")


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
        raise BadInstall(f"faiss is not installed ({e}): run ./setup_env.sh, or pass --backend chroma")
    return faiss


def _threads(total: int) -> int:
    """faiss's OpenMP threads for a build: every core this process may use (one on macOS, above),
    and one below SMALL_INDEX passages: threads insert in an order that varies from run to run, so
    the graph, and what s06 mines through it, would too; one thread builds the same graph every
    time, in seconds at that size."""
    from ..cli import usable_cores
    return 1 if sys.platform == "darwin" or total < SMALL_INDEX else usable_cores()


def _write(index, path: Path):
    """Atomically: a killed save leaves the previous file, never half of one."""
    faiss = _faiss()
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def build(job: BuildJob, source) -> dict:
    """Fill the graph(s) of index job.name from source.batches(0, total, start) (rows from `start`
    on), resuming a killed build of the same index. Shard i holds rows shard_bounds(total, shards)[i],
    built one after the other with all cores. Returns its state (the progress file's content)."""
    faiss = _faiss()
    d, name, meta, total, hnsw, shards = Path(job.data_dir), job.name, job.meta, job.total, job.hnsw, job.shards
    pp, log, progress, save_every = job.progress_path, job.log, job.progress, job.save_every
    bounds = shard_bounds(total, shards)
    paths = [graph_path(d, name, i, shards) for i in range(shards)]
    part = partial_path(d, name)
    codes = job.options.get("codes", "flat")
    state = read_progress(pp)
    same = (same_build(state, meta, total) and int(state.get("shards", 1)) == shards
            and state.get("codes", "flat") == codes)
    if same and state.get("complete") and all(p.exists() for p in paths):
        log(f"index {name} is already complete ({total:,} passages)")
        return state

    def new_graph():
        return make_graph(int(meta["index_dim"]), int(hnsw["max_neighbors"]), int(hnsw["ef_construction"]), codes,
                          state.get("sq_trained"))

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
        old = state if same else {}  # a restart of the same build keeps its centre and ranges
        state = dict(meta, name=name, total=total, done=0, complete=False, backend="faiss", shards=shards,
                     hnsw=dict(hnsw), codes=codes)
        centre = job.options.get("centre")
        if centre is not None:
            state["centre"] = [float(x) for x in centre]
        elif old.get("centre") is not None:
            state["centre"] = old["centre"]
        if codes == "sq8":
            train = job.options.get("train")
            if train is not None:
                state["sq_trained"] = train_sq8(train)
            elif old.get("sq_trained"):
                state["sq_trained"] = old["sq_trained"]
            else:
                raise ValueError("an sq8 graph needs sample vectors to train its quantiser (options['train'])")
        write_json(pp, state)
    else:
        state["done"] = start
        write_json(pp, state)
        log(f"resuming {name} at passage {start:,} of {total:,}")
    graph = graph or new_graph()
    cur = next(i for i, (lo, hi) in enumerate(bounds) if lo <= start < hi) if start < total else shards - 1
    faiss.omp_set_num_threads(_threads(total))
    if progress is not None:
        progress.update(start)
    buf: list = []
    step = max(1, min(ADD_BATCH, int(save_every)))

    def saved(done: int):
        state["done"] = done
        write_json(pp, state)  # progress only once the graph it counts is on disk
        if job.on_saved is not None:
            job.on_saved(done)

    # The graph holds p - centre (inner product): q.(p - c) = q.p - q.c ranks every passage as q.p
    # does, while the vectors no longer crowd in one narrow cone, where HNSW finds few neighbours.
    centre = np.asarray(state["centre"], np.float32) if state.get("centre") is not None else None

    def add():
        if buf:
            x = np.concatenate(buf).astype(np.float32)
            graph.add(np.ascontiguousarray(x - centre if centre is not None else x))  # label = row - lo
            buf.clear()

    pos = start
    for _rows, _ids, vecs, _docs in source.batches(0, total, start):
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
                    raise BuildIncomplete(f"index {name} shard {cur} holds {graph.ntotal:,} passages, expected "
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
        raise BuildIncomplete(f"index {name} got {pos:,} passages, expected {total:,}: re-run this stage")
    state.update(done=total, complete=True)
    write_json(pp, state)
    return state


class FaissGraph(Graph):
    """A built index's faiss graphs, each searched in its own thread (faiss releases the GIL). The
    graphs are read on first use, so s09's prompt appears while they load in the background."""

    def __init__(self, data_dir: Path, name: str, total: int, ef_search: int, shards: int = 1):
        self.bounds = shard_bounds(int(total), int(shards))
        self.paths = [graph_path(data_dir, name, i, shards) for i in range(shards)]
        for p in self.paths:
            if not p.exists():
                raise MissingInput(p, "s08_reencode_all.py", message=f"{p} is missing: re-run s05_encode_docs_to_chromadb.py "
                                                                     f"(or s08_reencode_all.py)")
        self.ef_search = int(ef_search)
        self._graphs, self._pool = None, None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._graphs is None:
                faiss = _faiss()
                if sys.platform == "darwin":
                    faiss.omp_set_num_threads(1)
                graphs = []
                for p, (lo, hi) in zip(self.paths, self.bounds):
                    # mapped, not read: the graph and its vectors stay in the page cache, one copy shared by
                    # every process that searches them (s11's workers); faiss without the flag reads a copy
                    g = faiss.read_index(str(p), getattr(faiss, "IO_FLAG_MMAP_IFC", 0))
                    if g.ntotal != hi - lo:
                        raise DamagedInput(p, f"a graph of {g.ntotal:,} passages, expected {hi - lo:,}", "s08_reencode_all.py",
                                           message=f"{p} holds {g.ntotal:,} passages, expected {hi - lo:,}: re-run s08_reencode_all.py")
                    g.hnsw.efSearch = self.ef_search
                    graphs.append(g)
                if len(graphs) > 1:
                    from concurrent.futures import ThreadPoolExecutor
                    self._pool = ThreadPoolExecutor(len(graphs), thread_name_prefix="graph")
                self._graphs = graphs
        return self._graphs

    def warm_up(self, dim: int = 0):
        self._load()

    def search(self, vecs: np.ndarray, n: int) -> list[np.ndarray]:
        graphs = self._graphs or self._load()
        q = np.ascontiguousarray(vecs, dtype=np.float32)

        def ask(i):
            lo, hi = self.bounds[i]
            _, rows = graphs[i].search(q, int(min(n, hi - lo)))
            return np.where(rows >= 0, rows + lo, -1)  # -1: fewer hits than asked for
        parts = [ask(0)] if self._pool is None else list(self._pool.map(ask, range(len(graphs))))
        rows = np.concatenate(parts, axis=1)
        return [r[r >= 0] for r in rows]

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def open_graph(data_dir: Path, state: dict, rows_of=None, **_) -> FaissGraph:
    from .graph import auto_ef_search
    ef = (state.get("hnsw") or {}).get("ef_search") or auto_ef_search(int(state["total"]))
    return FaissGraph(data_dir, state["name"], int(state["total"]), ef, int(state.get("shards", 1)))


def files(data_dir: Path, state: dict) -> list[Path]:
    n = int(state.get("shards", 1))
    return [graph_path(data_dir, state["name"], i, n) for i in range(n)]


def drop(data_dir: Path, state: dict, **_):
    name = state["name"]
    for p in (*Path(data_dir, "indexes").glob(f"{name}.*faiss"), partial_path(data_dir, name)):
        p.unlink(missing_ok=True)
