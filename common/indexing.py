"""Encode every passage with a checkpoint and index it in ChromaDB (s05 and s08)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from . import dense_index, vector_store
from .artifacts import StageError, check_lineage, require
from .corpus import load_vocab
from .encode import encode_rows, load_model
from .vocab import TokenTable


def auto_shards(total: int, host: str | None) -> int:
    """Parallel shards for an embedded build: one per core from 200k passages (each shard's HNSW
    insert runs in its own process); one below that, where start-up costs more than it saves."""
    from .cli import usable_cores
    if host or total < vector_store.SMALL_INDEX:
        return 1
    return min(4, usable_cores())


def index_checkpoint(data_dir: Path, ckpt_path: Path, c, device, encode_batch: int = 2048,
                     write_batch: int = 5000, store_text: bool = False, max_len: int = 256,
                     hnsw: dict | None = None, log=print, shards: int = 0, host: str | None = None,
                     index_dim: int = dense_index.INDEX_DIM, depth: int = dense_index.DEPTH,
                     backend: str | None = None, save_every: int = 250_000) -> dict:
    """Encode and index every passage: the full vectors into data/indexes/<name>.vectors.npy, the
    short index vectors (common/dense_index.py) into an HNSW graph: a faiss file
    (common/faiss_index.py; the default without a Chroma server) or a Chroma collection. With
    Chroma and shards > 1 (embedded store only) each shard is built by its own process into
    data/chroma-shard-i, and queries merge the shards' top-k."""
    from tqdm import tqdm
    d = Path(data_dir)
    vocab, vm = load_vocab(d)
    ptm = require(d / "passages_tok.parquet")
    check_lineage(ptm, "vocab", vm, "s02_tkn_ms_marco.py")
    model, ckpt = load_model(ckpt_path, vocab.fingerprint, device)  # refuses an unfinished checkpoint
    from .passage_store import build as build_text_store
    build_text_store(d)  # what s09 shows: text looked up by id, memory-mapped
    total = _count(d / "passages_tok.parquet")
    cfg = model.config
    index_dim = min(int(index_dim), model.dim) if cfg["lex_dim"] else model.dim
    backend = backend or ("chroma" if host else "faiss")
    if backend == "faiss" and (host or store_text):
        raise StageError("--chroma-host and --store-text are for --backend chroma")
    if backend == "faiss":
        from . import faiss_index
        shards = shards or faiss_index.auto_shards(total)
        # another shard count is another index (a rebuild never touches the one s09 may be querying)
        key = dict(hnsw or {}, backend=backend, **({"shards": shards} if shards > 1 else {}))
    else:
        shards = shards or auto_shards(total, host)
        key = dict(hnsw or {}, backend=backend)
    name = vector_store.collection_name(ckpt["fingerprint"], key, index_dim if index_dim < model.dim else None)
    meta = {"model_fingerprint": ckpt["fingerprint"], "vocab_fingerprint": vocab.fingerprint,
            "passages_tok": ptm["fingerprint"], "dim": model.dim, "index_dim": index_dim,
            "out_dim": cfg["out_dim"], "lex_dim": cfg["lex_dim"], "depth": int(depth), "full_vectors": True,
            "store_text": store_text}
    if backend == "faiss":
        meta["backend"] = "faiss"

    def finish(state):
        """What data/active_index.json records: the build (with the ef_search asked for now: a
        query-time setting, applied to the existing collections), the checkpoint, and s09's numpy
        query encoder."""
        from .query_encoder import export
        ef = (hnsw or {}).get("ef_search") or vector_store.auto_ef_search(total)
        n = int(state.get("shards", 1))
        if state.get("backend") != "faiss":  # (a faiss graph takes it from the progress file when read)
            cols = [vector_store.get_collection(c, state["name"])] if n <= 1 else \
                [vector_store.get_collection(vector_store.client(d, shard=i), state["name"]) for i in range(n)]
            vector_store.set_ef_search([x for x in cols if x is not None], ef)
        if (state.get("hnsw") or {}).get("ef_search") != ef:
            state = dict(state, hnsw=dict(state.get("hnsw") or {}, ef_search=ef))
            vector_store.write_json(vector_store.progress_path(d, state["name"]), state)
        qe = export(model, d, state["name"]) if model is not None else None
        # the files' sizes (and hashes where small), for s09 to check before it maps them
        state = vector_store.record_files(d, state)
        vector_store.write_json(vector_store.progress_path(d, state["name"]), state)
        return dict(state, checkpoint=str(Path(ckpt_path).name), stage=ckpt.get("stage"),
                    checkpoint_manifest=require(ckpt_path)["fingerprint"], query_encoder=qe)
    dense_index.check_index_dim(cfg["out_dim"], cfg["lex_dim"], index_dim)  # now, not after the first batch
    for n in {name, f"{name}-x{shards}"}:  # a complete index whose files were damaged is built again
        st = vector_store.read_progress(vector_store.progress_path(d, n))
        bad = st and st.get("complete") and st.get("name") == n and vector_store.index_damage(d, st)
        if bad:
            log(f"{bad}: building index {n} again")
            vector_store.progress_path(d, n).unlink()
    if backend == "faiss":  # shards are graphs built in turn by this process (Chroma: one process each)
        _prepare_vector_file(d, name, meta, total)
        table = TokenTable.read(d / "passages_tok.parquet", "passage_id")
        full = dense_index.VectorWriter(dense_index.vectors_path(d, name))
        graph = {k: v for k, v in dict(vector_store.HNSW, **(hnsw or {})).items() if k != "space"}
        with tqdm(total=total, desc=f"index {name}", unit="passage", mininterval=1) as bar:
            state = faiss_index.build(d, name, meta, total,
                                      _encoded_batches(model, table, device, meta, 0, total, encode_batch, max_len, full),
                                      graph, progress=bar, log=log, progress_path=vector_store.progress_path(d, name),
                                      save_every=save_every, kill_env=vector_store.KILL_ENV, shards=shards)
        full.close()
        return finish(state)
    _prepare_vector_file(d, name if shards <= 1 else f"{name}-x{shards}", meta, total)
    if shards <= 1:
        with tqdm(total=total, desc=f"index {name}", unit="passage", mininterval=1) as bar:
            state = _build_range(d, model, c, device, name, meta, 0, total, encode_batch, write_batch,
                                 store_text, max_len, hnsw, log, bar, None)
        return finish(state)
    if host:
        raise StageError("--shards > 1 is for the embedded store; a Chroma server indexes in one collection")
    name = f"{name}-x{shards}"  # its own progress file: never confused with a one-collection build
    pp = vector_store.progress_path(d, name)
    st = vector_store.read_progress(pp) or {}
    if st.get("complete") and int(st.get("shards", 1)) == shards and all(st.get(k) == v for k, v in meta.items()) \
            and vector_store.open_built(d, name) is not None:
        log(f"index {name} is already complete ({total:,} passages in {shards} shards)")
        return finish(vector_store.read_json(pp))
    if not st or any(st.get(k) != v for k, v in meta.items()) or st.get("total") != total:
        # what _prepare_vector_file reads to tell a resumed build (keep the vector file) from a new one
        vector_store.write_json(pp, dict(meta, name=name, total=total, done=0, complete=False, shards=shards))
    import multiprocessing as mp
    import time
    ctx = mp.get_context("spawn")  # torch and Chroma's Rust core do not survive fork
    bounds = [(i * total // shards, (i + 1) * total // shards) for i in range(shards)]
    procs = [ctx.Process(target=_shard_worker, args=(str(d), str(ckpt_path), i, shards, lo, hi, name, meta,
                                                     encode_batch, write_batch, store_text, max_len, hnsw))
             for i, (lo, hi) in enumerate(bounds)]
    for p in procs:
        p.start()
    with tqdm(total=total, desc=f"index {name} ({shards} shards)", unit="passage", mininterval=1) as bar:
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            done = sum(vector_store.read_json(f).get("done", 0) if f.exists() else 0
                       for f in (vector_store.shard_progress_path(d, name, i, shards) for i in range(shards)))
            bar.n = done
            bar.refresh()
    failed = [i for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        raise StageError(f"shard(s) {failed} of the index build failed (exit {[procs[i].exitcode for i in failed]}): "
                         f"re-run this stage to resume")
    n = vector_store.open_built_shards(d, name, shards).count()
    if n != total:
        raise StageError(f"sharded index {name} holds {n:,} passages, expected {total:,}: re-run this stage")
    state = dict(meta, name=name, total=total, done=total, complete=True, shards=shards,
                 hnsw=dict(vector_store.HNSW, **(hnsw or {})))
    vector_store.write_json(pp, state)
    return finish(state)


def _prepare_vector_file(d: Path, name: str, meta: dict, total: int):
    """Create data/indexes/<name>.vectors.npy, or keep it when this is a resumed build of the same
    index (its progress file says so)."""
    pp = vector_store.progress_path(d, name)
    st = vector_store.read_progress(pp) or {}
    resume = bool(st) and all(st.get(k) == v for k, v in meta.items()) and st.get("total") == total
    ids = pq.read_table(d / "passages_tok.parquet", columns=["passage_id"])["passage_id"].to_numpy()
    dense_index.create_vector_file(d, name, ids, meta["dim"], resume)


def _count(path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def _build_range(d, model, c, device, name, meta, lo, hi, encode_batch, write_batch, store_text, max_len,
                 hnsw, log, bar, progress_file, vec_name=None):
    table = TokenTable.read(d / "passages_tok.parquet", "passage_id")
    total = hi - lo
    vec_name = vec_name or name
    write_batch = min(write_batch, c.get_max_batch_size())
    texts = None
    if store_text:
        texts = pq.read_table(d / "passages.parquet", columns=["text"])["text"]
        if len(texts) != len(table):
            raise StageError("passages.parquet and passages_tok.parquet differ in length: re-run s02_tkn_ms_marco.py")

    full = dense_index.VectorWriter(dense_index.vectors_path(d, vec_name))
    state = vector_store.build(c, d, name, meta, total,
                               _encoded_batches(model, table, device, meta, lo, hi, encode_batch, max_len, full, texts),
                               write_batch, progress=bar, hnsw=hnsw, log=log, progress_file=progress_file)
    full.close()
    return state


def _encoded_batches(model, table, device, meta, lo, hi, encode_batch, max_len, full, texts=None):
    """batches(start): (ids, index vectors, documents or None) of rows lo+start..hi, the full vectors
    written to the vector file on the way (before the index has them: progress is only recorded
    after both)."""
    cfg = model.config

    def batches(start):
        for s in range(lo + start, hi, encode_batch):
            rows = np.arange(s, min(s + encode_batch, hi))
            vecs = encode_rows(model, table, rows, "passage", device, batch_size=512, max_len=max_len)
            full.write(s, vecs)
            docs = texts.slice(s, len(rows)).to_pylist() if texts is not None else None
            yield table.ids[rows], dense_index.index_vectors(vecs, cfg["out_dim"], cfg["lex_dim"], meta["index_dim"]), docs
    return batches


def _shard_worker(d, ckpt_path, i, shards, lo, hi, name, meta, encode_batch, write_batch, store_text, max_len, hnsw):
    """One shard's build, in its own process."""
    import torch
    torch.set_num_threads(1)
    d = Path(d)
    vocab, _ = load_vocab(d)
    model, _ = load_model(Path(ckpt_path), vocab.fingerprint, torch.device("cpu"))
    c = vector_store.client(d, shard=i, writer=True)
    # One HNSW insert thread per shard process: with Chroma's default (one per core) the shards'
    # threads contend for the same cores, and the build needs 10% more CPU for the same graph.
    hnsw = dict(hnsw or {}, num_threads=1)
    _build_range(d, model, c, torch.device("cpu"), name, dict(meta, shard=i, shards=shards), lo, hi,
                 encode_batch, write_batch, store_text, max_len, hnsw, lambda *a: None, None,
                 vector_store.shard_progress_path(d, name, i, shards), vec_name=name)
