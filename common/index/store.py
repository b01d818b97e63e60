"""The registry of built indexes in a data dir, and the pointer that says which one s09 queries.

data/indexes/<name>.json is each index's state; data/active_index.json (switched atomically, only
to a complete index) is the one s09 and s10 query. Which backend holds an index's graph is written
in its state and read here, in backend_of(), and nowhere else.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..artifacts import DamagedInput, MissingInput, StageError, damage, damaged, file_facts, load_npy_artifact, read_json_artifact
from . import chroma_graph, faiss_graph
from .dense import Index
from .graph import HNSW
from .state import ACTIVE, progress_path, read_progress, write_json
from .vectors import FullVectors, ids_path, vectors_path

BACKENDS = {m.NAME: m for m in (faiss_graph, chroma_graph)}
REBUILD = "s08_reencode_all.py"


def backend_of(state: dict):
    """The backend module of an index (states written before faiss existed name none: Chroma)."""
    name = state.get("backend") or chroma_graph.NAME
    if name not in BACKENDS:
        raise DamagedInput(progress_path(".", str(state.get("name"))), f"naming an unknown backend {name!r}", REBUILD,
                           message=f"index {state.get('name')} names an unknown backend {name!r}: re-run {REBUILD}")
    return BACKENDS[name]


def index_name(model_fp: str, hnsw: dict | None = None, index_dim: int | None = None) -> str:
    """One index per (model, backend and HNSW build settings, index vector length): changing any of
    them builds a new one beside the old. ef_search is a query-time setting, not part of the name."""
    key = dict(HNSW, **(hnsw or {}))
    key.pop("ef_search", None)
    if key.get("backend") == chroma_graph.NAME:
        key.pop("backend")  # names of Chroma builds from before the faiss backend stay the same
    if index_dim:
        key["index_dim"] = int(index_dim)
    h = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:6]
    return f"passages-{model_fp[:16]}-{h}"


# ------------------------------------------------------------------ the active pointer
def activate(data_dir: Path, state: dict, extra: dict):
    """Point s09 (and s10) at a complete index."""
    if not state.get("complete"):
        raise StageError(f"index {state.get('name')} is incomplete; not switching to it")
    write_json(Path(data_dir) / ACTIVE, dict(state, **extra))


def active(data_dir: Path) -> dict:
    p = Path(data_dir) / ACTIVE
    if not p.exists():
        raise MissingInput(p, "s05_encode_docs_to_chromadb.py (or s08_reencode_all.py)")
    a = read_json_artifact(p, "s08_reencode_all.py (or s05_encode_docs_to_chromadb.py)")
    lacking = [k for k in ("name", "checkpoint", "total") if k not in a]
    if lacking or not isinstance(a.get("name"), str):
        raise damaged(p, f"not an index pointer (no {', '.join(lacking) or 'name'})",
                      "s08_reencode_all.py (or s05_encode_docs_to_chromadb.py)")
    return a


# ------------------------------------------------------------------ damage checks
def index_files(data_dir: Path, state: dict) -> list[Path]:
    """Every file of a built index that never changes once it is complete (graphs, vectors, ids,
    the numpy query encoder)."""
    from ..query_encoder import paths as query_encoder_paths
    name = state["name"]
    return [vectors_path(data_dir, name), ids_path(data_dir, name), *query_encoder_paths(data_dir, name),
            *backend_of(state).files(data_dir, state)]


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


def check_index(data_dir: Path, state: dict, rerun: str = REBUILD):
    """Refuse a damaged index with one line: before anything maps its files."""
    bad = index_damage(data_dir, state)
    if bad:
        raise DamagedInput(Path(data_dir) / "indexes", bad, rerun, message=f"{bad}: re-run {rerun} (it rebuilds a damaged index)")


# ------------------------------------------------------------------ opening and dropping
def read_complete(data_dir: Path, name: str) -> dict | None:
    """The state of the complete index `name`, or None when it is missing or unfinished."""
    pp = progress_path(data_dir, name)
    if not pp.exists():
        return None
    st = read_json_artifact(pp, REBUILD)
    if not st.get("complete"):
        return None
    if st.get("name") != name or not isinstance(st.get("total"), int):
        raise damaged(pp, f"not the progress file of index {name}", REBUILD)
    return st


def open_index(data_dir: Path, name: str, host: str | None = None, port: int = chroma_graph.DEFAULT_PORT) -> Index | None:
    """The complete index `name`, ready to search, or None when it is missing or unfinished.
    host/port: a Chroma server other than the one the index was built on."""
    st = read_complete(data_dir, name)
    if st is None:
        return None
    check_index(data_dir, st)
    if not st.get("full_vectors"):
        raise DamagedInput(progress_path(data_dir, name), "an index without full vectors", REBUILD,
                           message=f"index {name} was built before indexes kept their full vectors: re-run {REBUILD}")
    full = FullVectors(data_dir, name)
    graph = backend_of(st).open_graph(data_dir, st, full.rows, host=host, port=port)
    return None if graph is None else Index(graph, dict(st, backend=backend_of(st).NAME), full)


def find_built(data_dir: Path, model_fp: str, host: str | None = None,
               port: int = chroma_graph.DEFAULT_PORT) -> Index | None:
    """A complete index of this model (the active one if it is), or None."""
    names = []
    try:
        a = active(data_dir)
        if a.get("model_fingerprint") == model_fp:
            names.append(a["name"])
            if host is None:
                host, port = a.get("chroma_host"), a.get("chroma_port", port)
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
    for n in dict.fromkeys(names):
        idx = open_index(data_dir, n, host, port)
        if idx is not None:
            return idx
    return None


def drop(data_dir: Path, name: str, **backend_kw):
    """Delete index `name`: its graph(s), vector files, query encoder and state."""
    from ..query_encoder import paths as query_encoder_paths
    pp = progress_path(data_dir, name)
    st = read_progress(pp) or {"name": name}
    backend_of(st).drop(data_dir, dict(st, name=name), **backend_kw)
    for f in (vectors_path(data_dir, name), ids_path(data_dir, name), *query_encoder_paths(data_dir, name)):
        f.unlink(missing_ok=True)
    pp.unlink(missing_ok=True)
