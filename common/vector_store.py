"""The passage index, and the pointer that says which index s09 queries.

An index is a progress file data/indexes/<name>.json, the vector files of common/dense_index.py and
an HNSW graph: a faiss file (common/faiss_index.py, the default) or a ChromaDB collection (below;
--backend chroma, and always with --chroma-host). What follows is about the Chroma backend; the
writer lock and the active pointer hold for both.

- Embedded `PersistentClient` under data/chroma by default; `--chroma-host/--chroma-port` use a
  Chroma server (`chroma run --path DIR`) instead. A PersistentClient must not be opened by two
  processes at once (each keeps its own copy of the HNSW index in memory and they overwrite each
  other's files): to query while another stage writes, run a server.
  What the pipeline does about it: a stage that writes (s05, s08) holds an exclusive lock,
  data/chroma/writer.lock, for as long as it runs; a second writer refuses with one line that
  suggests --chroma-host. A reader (s06, s09) never blocks or refuses: if a writer holds the lock
  it prints a warning and goes on reading the collection it was pointed at (which the writer does
  not touch: a build always goes into a new collection). Embedded reads during a write are
  best effort (they may miss the newest files); with a server, reading while writing is safe.
  The lock is released by the OS when its process ends, even when killed.
- Cosine space is set through the collection *configuration* (the old metadata key is silently
  ignored by Chroma 1.x and gives L2), and read back after creation to make sure.
- We always pass the vectors ourselves and `embedding_function=None`, so Chroma never tries to
  download an embedding model.
- A collection is built under its own name (from the model's fingerprint) with a progress file
  beside it; a killed build resumes from the last written batch (writes are upserts, so redoing a
  batch is harmless). `data/active_index.json`, the collection s09 queries, is switched (atomically)
  only once the new collection is complete and counted.
"""
from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from pathlib import Path

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from .artifacts import StageError, damage, damaged, file_facts, read_json, read_json_artifact, write_json

ACTIVE = "active_index.json"
LOCK = "writer.lock"
# Test hook: SIGKILL this process after this many written batches (tests of killed builds).
KILL_ENV = "MSMARCO_TEST_KILL_AFTER_BATCHES"
_locks: dict = {}  # path -> open file holding the writer lock for the life of the process
# Measured on the 1M-passage benchmark set (2 shards of 192-d index vectors queried in parallel,
# top 100 rescored; bench/README.md): ef_construction 100 (Chroma's default) finds 94.3% of the
# exact top 10 at ef_search 400, 93.4% at 300 (0.7 ms faster per query: ef_search 300 keeps s09's
# dense query near 5 ms); ef_construction 64 builds 1.3x faster but finds 88.6% even at 400; 50
# builds 1.8x faster and finds 84.8%. Our vectors are hard for HNSW (their lexical part is a
# random projection), so construction quality is kept.
HNSW = {"space": "cosine", "ef_construction": 100, "max_neighbors": 16, "ef_search": 300}
# Below this many passages an index is one collection, small enough to search with ef_search 800
# in under 3 ms: on the shared sample (18,531 passages) that finds 97.3% of the exact top 10
# against 95.4% at 300.
SMALL_INDEX = 200_000
EF_SEARCH_SMALL = 800


def auto_ef_search(total: int) -> int:
    return HNSW["ef_search"] if total >= SMALL_INDEX else EF_SEARCH_SMALL


def lock_path(data_dir: Path) -> Path:
    return Path(data_dir) / "chroma" / LOCK


def acquire_writer_lock(data_dir: Path | None = None, store: Path | None = None):
    """Take data/chroma/writer.lock (or `store`/writer.lock) for this process, or refuse when
    another process writes there."""
    import fcntl
    p = (Path(store) / LOCK if store is not None else lock_path(data_dir)).resolve()
    if str(p) in _locks:
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    f = open(p, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        who = f.read().strip() or "another process"
        f.close()
        raise StageError(f"{p.parent} is being written by {who}; one process at a time builds an index in a "
                         f"data dir (an embedded Chroma store allows no more): wait for it, or run a Chroma "
                         f"server and pass --chroma-host")
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} ({Path(sys.argv[0]).name})\n")
    f.flush()
    _locks[str(p)] = f


def writer_active(data_dir: Path) -> str | None:
    """Who holds the writer lock (a short description), or None when nobody writes."""
    import fcntl
    p = lock_path(data_dir).resolve()
    if str(p) in _locks or not p.exists():
        return None
    try:
        with open(p) as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return f.read().strip() or "another process"
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    except OSError:
        return None
    return None


def client(data_dir: Path, host: str | None = None, port: int = 8000, writer: bool = False,
           shard: int | None = None):
    """A Chroma client: HttpClient when `host` is given, else the embedded store under data/chroma
    (shard i of a sharded index: data/chroma-shard-i). `writer=True` (s05, s08) takes the embedded
    store's writer lock; readers only warn when it is held."""
    import chromadb
    from chromadb.config import Settings
    settings = Settings(anonymized_telemetry=False)
    if host:
        try:
            c = chromadb.HttpClient(host=host, port=port, settings=settings)
            c.heartbeat()
            return c
        except Exception as e:
            raise StageError(f"no Chroma server at {host}:{port} ({type(e).__name__}): start one with "
                             f"`chroma run --path {data_dir}/chroma-server --port {port}` or drop --chroma-host")
    path = Path(data_dir) / ("chroma" if shard is None else f"chroma-shard-{shard}")
    path.mkdir(parents=True, exist_ok=True)
    if shard is not None:
        if writer:
            acquire_writer_lock(store=path)
        return chromadb.PersistentClient(path=str(path), settings=settings)
    if writer:
        acquire_writer_lock(data_dir)
    else:
        who = writer_active(data_dir)
        if who:
            print(f"warning: {path} is being written by {who}; reading the active collection anyway "
                  f"(an embedded store is not safe for several processes: use --chroma-host for that)",
                  file=sys.stderr)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def client_from_args(args, writer: bool = False):
    return client(args.data_dir, getattr(args, "chroma_host", None), getattr(args, "chroma_port", 8000),
                  writer=writer)


def add_args(p):
    from . import cli as _cli
    p.add_argument("--chroma-host", default=None,
                   help="use a Chroma server (`chroma run --path DIR --port PORT`) instead of the embedded "
                        "store in data/chroma; needed to query while another stage writes (the embedded store "
                        "is for one process at a time)")
    p.add_argument("--chroma-port", type=_cli.int_range(1, 65535), default=8000)


BACKENDS = ("faiss", "chroma")


def add_index_args(p):
    """Index backend, HNSW and sharding settings of s05/s08."""
    from . import cli as _cli
    p.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS,
                   help="where the HNSW graph lives: faiss (a file in data/indexes; 1.9x faster to build, "
                        "3x faster to query: common/faiss_index.py) or chroma (a ChromaDB collection); "
                        "auto: chroma with --chroma-host, else faiss")
    p.add_argument("--save-every", type=_cli.positive_int, default=250_000,
                   help="faiss: passages between saves of the partial graph (a killed build resumes there)")
    p.add_argument("--shards", type=_cli.nonneg_int_zero_means("auto"), default=0,
                   help="HNSW graphs, searched in parallel (chroma: also built by parallel processes; embedded "
                        "store only); 0: one per core (at most 4) from 200k passages, else 1")
    p.add_argument("--ef-construction", type=_cli.positive_int, default=HNSW["ef_construction"])
    p.add_argument("--max-neighbors", type=_cli.int_range(2), default=HNSW["max_neighbors"], help="HNSW M")
    p.add_argument("--ef-search", type=_cli.nonneg_int_zero_means("auto"), default=0,
                   help=f"query-time HNSW effort; 0: {HNSW['ef_search']} from {SMALL_INDEX:,} passages, "
                        f"{EF_SEARCH_SMALL} below (changing it later does not rebuild)")
    from .dense_index import DEPTH, INDEX_DIM
    p.add_argument("--index-dim", type=_cli.positive_int, default=INDEX_DIM,
                   help="length of the vectors Chroma indexes (the semantic part + the first lexical dims); "
                        "the full vectors rescore its top --depth")
    p.add_argument("--depth", type=_cli.positive_int, default=DEPTH, help="Chroma candidates the full vectors rescore per query")


def backend_from_args(args) -> str:
    b = getattr(args, "backend", "auto")
    if b == "auto":
        return "chroma" if getattr(args, "chroma_host", None) else "faiss"
    if b == "faiss" and getattr(args, "chroma_host", None):
        raise StageError("--chroma-host needs --backend chroma (a faiss index is a local file)")
    return b


def writer_client(args, backend: str):
    """What s05/s08 build with: a Chroma client (chroma), or None after taking the same writer lock
    (faiss: one index writer per data dir either way)."""
    if backend == "chroma":
        return client_from_args(args, writer=True)
    acquire_writer_lock(args.data_dir)
    return None


def hnsw_from_args(args) -> dict:
    d = {"ef_construction": args.ef_construction, "max_neighbors": args.max_neighbors}
    if args.ef_search:
        d["ef_search"] = args.ef_search
    return d


def collection_name(model_fp: str, hnsw: dict | None = None, index_dim: int | None = None) -> str:
    """One collection per (model, HNSW build settings, index vector length): changing any of them
    builds a new one beside the old. ef_search is a query-time setting (set_ef_search), not part
    of the name."""
    import hashlib
    import json
    key = dict(HNSW, **(hnsw or {}))
    key.pop("ef_search", None)
    if key.get("backend") == "chroma":
        key.pop("backend")  # names of Chroma builds from before the faiss backend stay the same
    if index_dim:
        key["index_dim"] = int(index_dim)
    h = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:6]
    return f"passages-{model_fp[:16]}-{h}"


def find_built(data_dir: Path, model_fp: str, c=None):
    """A complete index of this model (the active one if it is), or None."""
    names = []
    try:
        a = active(data_dir)
        if a.get("model_fingerprint") == model_fp:
            names.append(a["name"])
    except StageError:
        pass
    folder = Path(data_dir) / "indexes"
    if folder.exists():
        for f in sorted(folder.glob("passages-*.json")):
            if ".shard" in f.name:
                continue
            st = read_progress(f) or {}
            if st.get("model_fingerprint") == model_fp and st.get("complete"):
                names.append(st["name"])
    for n in names:
        col = open_built(data_dir, n, c)
        if col is not None:
            return col
    return None


def embedded_store(c) -> Path | None:
    """The folder of an embedded (PersistentClient) store; None for a server client."""
    try:
        st = c.get_settings()
    except Exception:
        return None
    if "fastapi" in str(getattr(st, "chroma_api_impl", "")).lower() or not getattr(st, "is_persistent", False):
        return None
    return Path(st.persist_directory) if getattr(st, "persist_directory", None) else None


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


def progress_path(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / "indexes" / f"{name}.json"


def build(c, data_dir: Path, name: str, meta: dict, total: int, batches, write_batch: int,
          progress=None, hnsw: dict | None = None, log=print, progress_file: Path | None = None) -> dict:
    """Fill collection `name` from `batches(start_row)`, an iterator of (ids, vectors, documents)
    that starts at row `start_row`; resume a killed build of the same model. Returns its state.
    On an embedded store it takes the writer lock first (whoever called it)."""
    store = embedded_store(c)
    if store is not None:
        acquire_writer_lock(store=store)
    pp = progress_file or progress_path(data_dir, name)
    state = read_progress(pp)
    col = get_collection(c, name)
    same = state is not None and all(state.get(k) == meta.get(k) for k in meta) and state.get("total") == total
    if same and col is not None and state.get("complete") and col.count() == total:
        log(f"collection {name} is already complete ({total:,} passages)")
        return state
    if not (same and col is not None):
        if col is not None:
            delete_collection(c, name)
        col = create_collection(c, name, hnsw)
        state = dict(meta, name=name, total=total, done=0, complete=False, hnsw=dict(HNSW, **(hnsw or {})))
        write_json(pp, state)
    elif state["done"]:
        log(f"resuming {name} at passage {state['done']:,} of {total:,}")
    start = state["done"]
    resumed = start > 0
    if progress is not None:
        progress.update(start)

    # Encoding (torch, this thread) overlaps with indexing (Chroma's Rust core, writer thread).
    q: queue.Queue = queue.Queue(maxsize=3)
    err: list = []
    kill_after = int(os.environ.get(KILL_ENV) or 0)
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
                # (5% faster) for the rest, which no earlier run can have written.
                (col.upsert if resumed and not written[0] else col.add)(ids=ids, embeddings=vecs, **kw)
                state["done"] = end
                write_json(pp, state)  # progress only after the batch is in
                written[0] += 1
                if kill_after and written[0] >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
        except BaseException as e:  # surface in the main thread
            err.append(e)
            while True:  # drain so the producer never blocks forever
                if q.get() is None:
                    return

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    try:
        pos = start
        for ids, vecs, docs in batches(start):
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
        raise StageError(f"collection {name} holds {n:,} passages, expected {total:,}: re-run this stage to rebuild it")
    state["complete"] = True
    write_json(pp, state)
    return state


def activate(data_dir: Path, state: dict, extra: dict):
    """Point s09 (and s10) at a complete collection."""
    if not state.get("complete"):
        raise StageError(f"collection {state.get('name')} is incomplete; not switching to it")
    write_json(Path(data_dir) / ACTIVE, dict(state, **extra))


def active(data_dir: Path) -> dict:
    p = Path(data_dir) / ACTIVE
    if not p.exists():
        raise StageError(f"{p} not found: run s05_encode_docs_to_chromadb.py (or s08_reencode_all.py) first")
    a = read_json_artifact(p, "s08_reencode_all.py (or s05_encode_docs_to_chromadb.py)")
    lacking = [k for k in ("name", "checkpoint", "total") if k not in a]
    if lacking or not isinstance(a.get("name"), str):
        raise damaged(p, f"not an index pointer (no {', '.join(lacking) or 'name'})",
                      "s08_reencode_all.py (or s05_encode_docs_to_chromadb.py)")
    return a


def read_progress(pp: Path) -> dict | None:
    """A build's progress file for a writer (s05, s08): None when missing or damaged (the build
    then starts again under a new file, by rename)."""
    try:
        return read_json_artifact(pp, missing_ok=True)
    except StageError:
        return None


def index_files(data_dir: Path, state: dict) -> list[Path]:
    """Every file of a built index that never changes once it is complete (graphs, vectors, ids,
    the numpy query encoder)."""
    from .dense_index import ids_path, vectors_path
    from .query_encoder import paths as query_encoder_paths
    name = state["name"]
    out = [vectors_path(data_dir, name), ids_path(data_dir, name), *query_encoder_paths(data_dir, name)]
    if state.get("backend") == "faiss":
        from .faiss_index import graph_path
        n = int(state.get("shards", 1))
        out += [graph_path(data_dir, name, i, n) for i in range(n)]
    return out


def record_files(data_dir: Path, state: dict) -> dict:
    """state with "files": the byte size (and sha256 when small) of each file of the complete index,
    which check_index compares when it is opened."""
    return dict(state, files={p.name: file_facts(p) for p in index_files(data_dir, state) if p.exists()})


def index_damage(data_dir: Path, state: dict) -> str | None:
    """What is wrong with a complete index's files ("<path> is cut short (...)"), or None: sizes and
    hashes against what its build recorded, and the vector files' headers against its size."""
    folder = Path(data_dir) / "indexes"
    for fname, facts in (state.get("files") or {}).items():
        bad = damage(folder / fname, facts)
        if bad:
            return f"{folder / fname} is {bad}"
    from .artifacts import load_npy_artifact
    from .dense_index import ids_path, vectors_path
    name, total, dim = state["name"], int(state.get("total") or 0), int(state.get("dim") or 0)
    checks = [(ids_path(data_dir, name), (2, total), "int64")]
    if state.get("full_vectors"):
        checks.append((vectors_path(data_dir, name), (total, dim), "float16"))
    for p, shape, dt in checks:
        if p.exists():
            try:
                load_npy_artifact(p, "-", mmap_mode="r", shape=shape, dtype=dt)
            except StageError as e:
                return str(e).rsplit(": re-run", 1)[0]
    return None


def check_index(data_dir: Path, state: dict, rerun: str = "s08_reencode_all.py"):
    """Refuse a damaged index with one line: before anything maps its files."""
    bad = index_damage(data_dir, state)
    if bad:
        raise StageError(f"{bad}: re-run {rerun} (it rebuilds a damaged index)")


class ShardedIndex:
    """Several embedded collections, one per shard, queried as one: each shard's top-k, merged.
    Sharding lets s05/s08 build the HNSW graphs in parallel processes (each Chroma insert uses
    about 1.5 cores, with its own locking); queries ask the shards in parallel threads (Chroma's
    search releases the GIL: at 1M passages, 2 shards answer in 4.1 ms instead of 8.2 ms)."""

    def __init__(self, cols: list, counts: list[int] | None = None):
        from concurrent.futures import ThreadPoolExecutor
        self.cols = cols
        # count() costs 1.2 s per 500k-passage shard on a fresh client: take the counts the build
        # recorded when they are known, and never count on every query
        self.counts = list(counts) if counts is not None else [c.count() for c in cols]
        self._pool = ThreadPoolExecutor(len(cols), thread_name_prefix="shard") if len(cols) > 1 else None

    def count(self) -> int:
        return sum(self.counts)

    def query(self, query_embeddings, n_results: int, include: list):
        """Each shard's top n_results, merged by distance into one top n_results; without
        "distances" in `include` (the caller rescores them itself) all the shards' ids, unmerged."""
        def ask(cn):
            c, n = cn
            return c.query(query_embeddings=query_embeddings, n_results=min(n_results, n), include=list(include))
        todo = [(c, n) for c, n in zip(self.cols, self.counts) if n]
        parts = list(self._pool.map(ask, todo)) if self._pool is not None else [ask(x) for x in todo]
        if "distances" not in include:
            return {"ids": [sum((p["ids"][qi] for p in parts), []) for qi in range(len(query_embeddings))]}
        out = {"ids": [], "distances": [], "documents": []}
        for qi in range(len(query_embeddings)):
            rows = []
            for p in parts:
                docs = p.get("documents") or [None] * len(p["ids"])
                rows += list(zip(p["distances"][qi], p["ids"][qi], (docs[qi] or [None] * len(p["ids"][qi]))))
            rows.sort(key=lambda r: r[0])
            rows = rows[:n_results]
            out["ids"].append([r[1] for r in rows])
            out["distances"].append([r[0] for r in rows])
            out["documents"].append([r[2] for r in rows])
        return out

    def get(self, ids, include: list):
        got = {"ids": [], "documents": [], "embeddings": []}
        for c in self.cols:
            r = c.get(ids=list(ids), include=include)
            got["ids"] += r["ids"]
            for key in ("documents", "embeddings"):
                vals = r.get(key)
                got[key] += list(vals) if vals is not None else [None] * len(r["ids"])
        return got


def shard_progress_path(data_dir: Path, name: str, shard: int, shards: int) -> Path:
    return Path(data_dir) / "indexes" / f"{name}.shard{shard}of{shards}.json"


def open_built(data_dir: Path, name: str, c=None, host: str | None = None, port: int = 8000):
    """The complete index `name` (a DenseIndex over its collection or shards), or None when it is
    missing or unfinished."""
    from .dense_index import DenseIndex
    pp = progress_path(data_dir, name)
    if not pp.exists():
        return None
    st = read_json_artifact(pp, "s08_reencode_all.py")
    if not st.get("complete"):
        return None
    if st.get("name") != name or not isinstance(st.get("total"), int):
        raise damaged(pp, f"not the progress file of index {name}", "s08_reencode_all.py")
    check_index(data_dir, st)
    if st.get("backend") == "faiss":
        from .faiss_index import FaissIndex
        ef = (st.get("hnsw") or {}).get("ef_search") or auto_ef_search(int(st["total"]))
        return DenseIndex(FaissIndex(data_dir, name, int(st["total"]), ef, int(st.get("shards", 1))), st, data_dir)
    shards = int(st.get("shards", 1))
    if shards > 1:
        cols = [get_collection(client(data_dir, shard=i), name) for i in range(shards)]
        if any(col is None for col in cols):
            return None
        counts = [read_json(shard_progress_path(data_dir, name, i, shards)).get("total") for i in range(shards)] \
            if all(shard_progress_path(data_dir, name, i, shards).exists() for i in range(shards)) else None
        return DenseIndex(ShardedIndex(cols, None if counts is None or None in counts else counts), st, data_dir)
    c = c if c is not None else client(data_dir, host, port)
    col = get_collection(c, name)
    return None if col is None else DenseIndex(col, st, data_dir)


def open_built_shards(data_dir: Path, name: str, shards: int) -> ShardedIndex:
    return ShardedIndex([get_collection(client(data_dir, shard=i), name) for i in range(shards)])


def drop_built(data_dir: Path, name: str, c=None):
    pp = progress_path(data_dir, name)
    st = read_json(pp) if pp.exists() else {}
    shards = int(st.get("shards", 1))
    if st.get("backend") == "faiss":
        from .faiss_index import drop
        drop(data_dir, name)
    elif shards > 1:
        for i in range(shards):
            delete_collection(client(data_dir, shard=i, writer=True), name)
            shard_progress_path(data_dir, name, i, shards).unlink(missing_ok=True)
    elif c is not None:
        delete_collection(c, name)
    from .dense_index import ids_path, vectors_path
    from .query_encoder import paths as query_encoder_paths
    for f in (vectors_path(data_dir, name), ids_path(data_dir, name), *query_encoder_paths(data_dir, name)):
        f.unlink(missing_ok=True)
    pp.unlink(missing_ok=True)
