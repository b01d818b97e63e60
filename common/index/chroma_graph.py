"""The ChromaDB backend (--backend chroma; always with --chroma-host): each graph a collection.

This is the only module that imports chromadb.
- Embedded `PersistentClient` under data/chroma by default; `--chroma-host/--chroma-port` use a
  Chroma server (`chroma run --path DIR`) instead. A PersistentClient must not be opened by two
  processes at once (each keeps its own copy of the HNSW index in memory and they overwrite each
  other's files): to query while another stage writes, run a server. A reader (s06, s09) of an
  embedded store never blocks: if a writer holds the data dir's lock it warns and reads the
  collection it was pointed at (a build always goes into a new collection).
- Cosine space is set through the collection *configuration* (the old metadata key is silently
  ignored by Chroma 1.x and gives L2), and read back after creation to make sure.
- We always pass the vectors ourselves and `embedding_function=None`, so Chroma never tries to
  download an embedding model; telemetry is off.
- Collection ids are passage ids (strings); search() maps them to rows with the index's sorted ids.
- A killed build resumes from the last written batch (the first batch after a resume is upserted,
  so redoing it is harmless).
- Sharded (embedded store only): shard i is collection <name> in data/chroma-shard-i, built by its
  own process (each Chroma insert uses about 1.5 cores, with its own locking); queries ask the
  shards in parallel threads and merge.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from pathlib import Path

import numpy as np

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from ..artifacts import BadSetting
from .graph import HNSW, SMALL_INDEX, BuildJob, Graph, auto_ef_search, shard_bounds
from .state import BuildIncomplete, acquire_writer_lock, read_json, read_progress, same_build, writer_active, write_json

NAME = "chroma"
DEFAULT_PORT = 8000
# BuildJob.options read here: host, port (a Chroma server), write_batch (vectors per write, capped at
# the client's maximum), store_text (also store passage text as documents)


def add_args(p):
    """--chroma-host/--chroma-port, for every stage that opens an index."""
    from .. import cli as _cli
    p.add_argument("--chroma-host", default=None,
                   help="use a Chroma server (`chroma run --path DIR --port PORT`) instead of the embedded "
                        "store in data/chroma; needed to query while another stage writes (the embedded store "
                        "is for one process at a time)")
    p.add_argument("--chroma-port", type=_cli.int_range(1, 65535), default=DEFAULT_PORT)


def client(data_dir: Path, host: str | None = None, port: int = DEFAULT_PORT, writer: bool = False,
           shard: int | None = None):
    """A Chroma client: HttpClient when `host` is given, else the embedded store under data/chroma
    (shard i of a sharded index: data/chroma-shard-i). writer=True takes the embedded store's lock."""
    import chromadb
    from chromadb.config import Settings
    settings = Settings(anonymized_telemetry=False)
    if host:
        try:
            c = chromadb.HttpClient(host=host, port=port, settings=settings)
            c.heartbeat()
            return c
        except Exception as e:
            raise BadSetting(f"no Chroma server at {host}:{port} ({type(e).__name__}): start one with "
                             f"`chroma run --path {data_dir}/chroma-server --port {port}` or drop --chroma-host")
    path = Path(data_dir) / ("chroma" if shard is None else f"chroma-shard-{shard}")
    path.mkdir(parents=True, exist_ok=True)
    if writer:  # the data dir's writer lock (a shard's store: its own, held by its build process)
        acquire_writer_lock(path if shard is not None else Path(data_dir) / "indexes",
                            hint=" (an embedded Chroma store allows no more), or run a Chroma server and pass --chroma-host")
    elif shard is None:
        who = writer_active(Path(data_dir) / "indexes")
        if who:
            print(f"warning: {path} is being written by {who}; reading the active collection anyway "
                  f"(an embedded store is not safe for several processes: use --chroma-host for that)",
                  file=sys.stderr)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def auto_shards(total: int, job: BuildJob | None = None) -> int:
    """One shard per core (at most 4) from 200k passages on an embedded store; a server indexes
    into one collection."""
    from ..cli import usable_cores
    if (job is not None and job.options.get("host")) or total < SMALL_INDEX:
        return 1
    return min(4, usable_cores())


def get_collection(c, name: str):
    try:
        return c.get_collection(name, embedding_function=None)
    except Exception:
        return None


def create_collection(c, name: str, hnsw: dict | None = None):
    cfg = dict(HNSW, **(hnsw or {}))
    col = c.create_collection(name, embedding_function=None, configuration={"hnsw": cfg})
    got = (col.configuration or {}).get("hnsw") or {}
    if got.get("space") != "cosine":
        raise RuntimeError(f"Chroma did not apply cosine space to {name}: {got}")
    return col


def set_ef_search(cols: list, ef: int):
    """Chroma keeps ef_search in the collection's configuration; a process that opens it later uses
    the new value (one that already has the index loaded keeps the old one)."""
    for col in cols:
        cur = ((col.configuration or {}).get("hnsw") or {}).get("ef_search")
        if cur != int(ef):
            col.modify(configuration={"hnsw": {"ef_search": int(ef)}})


def delete_collection(c, name: str):
    try:
        c.delete_collection(name)
    except Exception:
        pass


def shard_progress_path(data_dir: Path, name: str, shard: int, shards: int) -> Path:
    return Path(data_dir) / "indexes" / f"{name}.shard{shard}of{shards}.json"


# ------------------------------------------------------------------ building
def build(job: BuildJob, source) -> dict:
    """Fill the collection(s) of index job.name from source.batches(lo, hi, start); resume a killed
    build of the same index. Returns its state. Sharded: one process per shard."""
    if job.shards <= 1:
        c = client(job.data_dir, job.options.get("host"), job.options.get("port", DEFAULT_PORT), writer=True)
        state = _build_collection(c, job, source, 0, job.total, job.progress_path, job.progress)
        _finish_ef(job, [get_collection(c, job.name)])
        return state
    if job.options.get("host"):
        raise BadSetting("--shards > 1 is for the embedded store; a Chroma server indexes in one collection")
    return _build_sharded(job, source)


def _finish_ef(job: BuildJob, cols: list):
    ef = job.hnsw.get("ef_search") or auto_ef_search(job.total)
    set_ef_search([x for x in cols if x is not None], ef)


def _build_collection(c, job: BuildJob, source, lo: int, hi: int, pp: Path, progress) -> dict:
    name, meta, total = job.name, job.meta, hi - lo
    state = read_progress(pp)
    col = get_collection(c, name)
    same = same_build(state, meta, total)
    if same and col is not None and state.get("complete") and col.count() == total:
        job.log(f"collection {name} is already complete ({total:,} passages)")
        return state
    if not (same and col is not None):
        if col is not None:
            delete_collection(c, name)
        col = create_collection(c, name, job.hnsw)
        state = dict(meta, name=name, total=total, done=0, complete=False, backend=NAME,
                     hnsw=dict(HNSW, **job.hnsw))
        write_json(pp, state)
    elif state["done"]:
        job.log(f"resuming {name} at passage {state['done']:,} of {total:,}")
    start = state["done"]
    resumed = start > 0
    if progress is not None:
        progress.update(start)
    write_batch = min(int(job.options.get("write_batch", 5000)), c.get_max_batch_size())

    # Encoding (torch, this thread) overlaps with indexing (Chroma's Rust core, writer thread).
    q: queue.Queue = queue.Queue(maxsize=3)
    err: list = []
    written = [0]

    def writer():
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                ids, vecs, docs, end = item
                kw = {"documents": docs} if docs is not None else {}
                # Only the first batch after a resume may already be (partly) in: upsert it; `add`
                # (faster) for the rest, which no earlier run can have written.
                (col.upsert if resumed and not written[0] else col.add)(ids=ids, embeddings=vecs, **kw)
                state["done"] = end
                write_json(pp, state)  # progress only after the batch is in
                written[0] += 1
                if job.on_saved is not None:
                    job.on_saved(end)
        except BaseException as e:  # surface in the main thread
            err.append(e)
            while True:  # drain so the producer never blocks forever
                if q.get() is None:
                    return

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    try:
        pos = start
        for _rows, ids, vecs, docs in source.batches(lo, hi, start):
            for s in range(0, len(ids), write_batch):
                e = min(s + write_batch, len(ids))
                q.put(([str(i) for i in ids[s:e]], vecs[s:e], docs[s:e] if docs is not None else None, pos + e))
                if err:
                    break
            pos += len(ids)
            if progress is not None:
                progress.update(len(ids))
            if err:
                break
    finally:
        q.put(None)
        th.join()
    if err:
        raise err[0]
    n = col.count()
    if n != total:
        # Forget the progress, so that the re-run rebuilds from scratch instead of resuming into
        # the same mismatch again.
        pp.unlink(missing_ok=True)
        raise BuildIncomplete(f"collection {name} holds {n:,} passages, expected {total:,}: re-run this stage to rebuild it")
    state["complete"] = True
    write_json(pp, state)
    return state


def _build_sharded(job: BuildJob, source) -> dict:
    import multiprocessing as mp
    import time
    d, name, shards, total = Path(job.data_dir), job.name, job.shards, job.total
    st = read_progress(job.progress_path) or {}
    if st.get("complete") and int(st.get("shards", 1)) == shards and same_build(st, job.meta, total):
        cols = [get_collection(client(d, shard=i), name) for i in range(shards)]
        if all(c is not None for c in cols):
            job.log(f"index {name} is already complete ({total:,} passages in {shards} shards)")
            _finish_ef(job, cols)
            return st
    if not same_build(st, job.meta, total):
        write_json(job.progress_path, dict(job.meta, name=name, total=total, done=0, complete=False,
                                           backend=NAME, shards=shards))
    import dataclasses
    ctx = mp.get_context("spawn")  # torch and Chroma's Rust core do not survive fork
    wjob = dataclasses.replace(job, progress=None, log=print, on_saved=None)  # what a process can be sent
    procs = [ctx.Process(target=_shard_worker, args=(wjob, source, i, lo, hi))
             for i, (lo, hi) in enumerate(shard_bounds(total, shards))]
    for p in procs:
        p.start()
    bar = job.progress
    while any(p.is_alive() for p in procs):
        time.sleep(0.5)
        if bar is not None:
            bar.n = sum(read_json(f).get("done", 0) if f.exists() else 0
                        for f in (shard_progress_path(d, name, i, shards) for i in range(shards)))
            bar.refresh()
    failed = [i for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        raise BuildIncomplete(f"shard(s) {failed} of the index build failed (exit {[procs[i].exitcode for i in failed]}): "
                         f"re-run this stage to resume")
    cols = [get_collection(client(d, shard=i), name) for i in range(shards)]
    n = sum(c.count() for c in cols if c is not None)
    if n != total:
        raise BuildIncomplete(f"sharded index {name} holds {n:,} passages, expected {total:,}: re-run this stage")
    _finish_ef(job, cols)
    state = dict(job.meta, name=name, total=total, done=total, complete=True, backend=NAME, shards=shards,
                 hnsw=dict(HNSW, **job.hnsw))
    write_json(job.progress_path, state)
    return state


def _shard_worker(job: BuildJob, source, i: int, lo: int, hi: int):
    """One shard's build, in its own process: one HNSW insert thread (the shards' processes share
    the cores), progress in its own file."""
    import dataclasses
    source.single_thread()
    c = client(job.data_dir, shard=i, writer=True)
    sj = dataclasses.replace(job, meta=dict(job.meta, shard=i, shards=job.shards),
                             hnsw=dict(job.hnsw, num_threads=1), log=lambda *a: None)
    _build_collection(c, sj, source, lo, hi, shard_progress_path(job.data_dir, job.name, i, job.shards), None)


# ------------------------------------------------------------------ querying
class ChromaGraph(Graph):
    """One collection, or one per shard queried in parallel threads (Chroma's search releases the
    GIL); answers in rows through rows_of(passage ids)."""

    def __init__(self, cols: list, counts: list[int], rows_of):
        from concurrent.futures import ThreadPoolExecutor
        self.cols, self.counts, self.rows_of = cols, counts, rows_of
        self._pool = ThreadPoolExecutor(len(cols), thread_name_prefix="shard") if len(cols) > 1 else None

    def search(self, vecs: np.ndarray, n: int) -> list[np.ndarray]:
        def ask(cn):
            c, m = cn
            return c.query(query_embeddings=np.asarray(vecs, np.float32), n_results=min(n, m), include=[])["ids"]
        todo = [(c, m) for c, m in zip(self.cols, self.counts) if m]
        parts = list(self._pool.map(ask, todo)) if self._pool is not None else [ask(x) for x in todo]
        out = []
        for qi in range(len(vecs)):
            ids = np.array([int(x) for p in parts for x in p[qi]], dtype=np.int64)
            rows, found = self.rows_of(ids)
            out.append(np.asarray(rows)[found])
        return out

    def warm_up(self, dim: int):
        for c, m in zip(self.cols, self.counts):  # the first query loads the collection's HNSW index from disk
            if m:
                c.query(query_embeddings=np.full((1, int(dim)), 0.1, np.float32), n_results=1, include=[])

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def documents(self, ids) -> list[str]:
        """Passage texts stored with --store-text ("" where none)."""
        got = {}
        for c in self.cols:
            r = c.get(ids=[str(int(i)) for i in ids], include=["documents"])
            got.update(zip(r["ids"], r["documents"]))
        return [got.get(str(int(i))) or "" for i in ids]


def open_graph(data_dir: Path, state: dict, rows_of, host: str | None = None, port: int = DEFAULT_PORT):
    """The collection(s) of a complete index, or None when one is missing."""
    name, shards = state["name"], int(state.get("shards", 1))
    if shards > 1:
        cols = [get_collection(client(data_dir, shard=i), name) for i in range(shards)]
        if any(col is None for col in cols):
            return None
        paths = [shard_progress_path(data_dir, name, i, shards) for i in range(shards)]
        # count() costs seconds per large shard on a fresh client: take the counts the build recorded
        counts = [read_json(p).get("total") if p.exists() else None for p in paths]
        if None in counts:
            counts = [c.count() for c in cols]
        return ChromaGraph(cols, counts, rows_of)
    if host is None:
        host, port = state.get("chroma_host"), state.get("chroma_port", port)
    col = get_collection(client(data_dir, host, port), name)
    return None if col is None else ChromaGraph([col], [int(state["total"])], rows_of)


def files(data_dir: Path, state: dict) -> list[Path]:
    return []  # Chroma's own files change as it runs (SQLite): none is checked by size


def drop(data_dir: Path, state: dict, host: str | None = None, port: int = DEFAULT_PORT):
    name, shards = state["name"], int(state.get("shards", 1))
    if shards > 1:
        for i in range(shards):
            delete_collection(client(data_dir, shard=i, writer=True), name)
            shard_progress_path(data_dir, name, i, shards).unlink(missing_ok=True)
    else:
        delete_collection(client(data_dir, host or state.get("chroma_host"),
                                 port if host else state.get("chroma_port", port), writer=True), name)
