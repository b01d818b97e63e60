"""Encode every passage with a checkpoint and build its index: the one build entry point of s05,
s08 and s10.

The full vectors go into data/indexes/<name>.vectors.npy (common/index/vectors.py) as they are
encoded, the short index vectors into the backend's graph (faiss file or Chroma collection), and
the build's progress into data/indexes/<name>.json; a killed build resumes. Once complete, the
index's files are recorded (sizes, hashes) for the damage check when it is opened, and s09's numpy
query encoder is exported beside it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..artifacts import BadSetting, StageError, check_lineage, require
from . import chroma_graph, faiss_graph, parts, store
from .graph import HNSW, SAVE_EVERY, BuildJob, auto_ef_search, auto_max_neighbors
from .state import acquire_writer_lock, progress_path, read_progress, same_build, write_json
from .vectors import DEPTH, INDEX_DIM, VectorWriter, check_index_dim, create_vector_file, index_vectors, vectors_path

ENCODE_BATCH = 4096  # passages encoded per step (and written to the vector file at once)
WRITE_BATCH = 5000   # Chroma: vectors per write, capped at the client's maximum


@dataclass
class BuildOptions:
    backend: str = "auto"          # faiss | chroma | auto (chroma with a server, else faiss)
    hnsw: dict = field(default_factory=dict)  # ef_construction, max_neighbors, ef_search overrides
    shards: int = 0                # 0: the backend's choice
    index_dim: int = INDEX_DIM
    depth: int = DEPTH
    save_every: int = SAVE_EVERY
    encode_batch: int = ENCODE_BATCH
    write_batch: int = WRITE_BATCH
    store_text: bool = False
    codes: str = "auto"            # faiss: flat | sq8 | auto (sq8 from faiss_graph.SQ8_FROM passages)
    host: str | None = None
    port: int = chroma_graph.DEFAULT_PORT

    def resolved_backend(self) -> str:
        if self.backend == "auto":
            return chroma_graph.NAME if self.host else faiss_graph.NAME
        if self.backend == faiss_graph.NAME and self.host:
            raise BadSetting("--chroma-host needs --backend chroma (a faiss index is a local file)")
        return self.backend


def add_args(p):
    """The index options of s05 and s08."""
    from .. import cli
    from .graph import EF_SEARCH_SMALL, MAX_NEIGHBORS_LARGE_FLAT, SMALL_INDEX
    p.add_argument("--backend", default="auto", choices=("auto", *store.BACKENDS),
                   help="where the HNSW graph lives: faiss (files in data/indexes; faster to build and query: "
                        "common/index/faiss_graph.py) or chroma (ChromaDB collections); auto: chroma with "
                        "--chroma-host, else faiss")
    p.add_argument("--save-every", type=cli.positive_int, default=SAVE_EVERY,
                   help="faiss: passages between saves of the partial graph (a killed build resumes there)")
    p.add_argument("--shards", type=cli.nonneg_int_zero_means("auto"), default=0,
                   help="HNSW graphs, searched in parallel (chroma: also built by parallel processes; embedded "
                        "store only); 0: one per core (at most 4) from 200k passages, else 1")
    p.add_argument("--ef-construction", type=cli.positive_int, default=HNSW["ef_construction"])
    p.add_argument("--max-neighbors", type=_max_neighbors, default=0,
                   help=f"HNSW M; 0: {MAX_NEIGHBORS_LARGE_FLAT} for faiss float32 graphs from {SMALL_INDEX:,} "
                        f"passages, else {HNSW['max_neighbors']}")
    p.add_argument("--ef-search", type=cli.nonneg_int_zero_means("auto"), default=0,
                   help=f"query-time HNSW effort; 0: {HNSW['ef_search']} from {SMALL_INDEX:,} passages, "
                        f"{EF_SEARCH_SMALL} below (changing it later does not rebuild)")
    p.add_argument("--graph-codes", default="auto", choices=("auto", *faiss_graph.CODES),
                   help="faiss: what the graph stores of each vector: flat (float32) or sq8 (8-bit scalar-quantised, "
                        f"a quarter of the bytes; the full vectors still rescore); auto: sq8 from "
                        f"{faiss_graph.SQ8_FROM:,} passages, else flat")
    p.add_argument("--index-dim", type=cli.positive_int, default=INDEX_DIM,
                   help="length of the vectors the graph indexes (with a lexical part: the semantic part + the "
                        "first lexical dims); the full vectors rescore its top --depth")
    p.add_argument("--depth", type=cli.positive_int, default=DEPTH, help="graph candidates the full vectors rescore per query")
    p.add_argument("--encode-batch", type=cli.positive_int, default=ENCODE_BATCH)
    p.add_argument("--encode-part", type=parts.parse, default=None, metavar="I/N",
                   help="only encode part I of N of the passages (into data/encoded/, no index, no lock) and exit, "
                        "so that N processes, machines or GPUs share the work; a plain run afterwards builds the "
                        "index from the finished parts")
    p.add_argument("--write-batch", type=cli.positive_int, default=WRITE_BATCH,
                   help="chroma: vectors per write (capped at the client's max batch size)")
    p.add_argument("--store-text", action="store_true",
                   help="chroma: also store passage text as documents (slower: Chroma full-text indexes it); "
                        "results always read text from data/passage_text/")
    chroma_graph.add_args(p)


def _max_neighbors(s: str) -> int:
    import argparse
    from .. import cli
    v = cli.nonneg_int_zero_means("auto")(s)
    if v == 1:
        raise argparse.ArgumentTypeError("must be 0 (auto) or an integer >= 2, not 1")
    return v


_max_neighbors.__name__ = "integer"


def options_from_args(args) -> BuildOptions:
    hnsw = {"ef_construction": args.ef_construction}
    if args.max_neighbors:
        hnsw["max_neighbors"] = args.max_neighbors
    if args.ef_search:
        hnsw["ef_search"] = args.ef_search
    return BuildOptions(backend=args.backend, hnsw=hnsw, shards=args.shards, index_dim=args.index_dim,
                        depth=args.depth, save_every=args.save_every, encode_batch=args.encode_batch,
                        write_batch=args.write_batch, store_text=args.store_text, codes=args.graph_codes,
                        host=args.chroma_host,
                        port=args.chroma_port)


class EncodeSource:
    """The passages' index vectors in row ranges, for a backend's build: batches(lo, hi, start)
    yields (rows, passage ids, index vectors, texts or None) from row lo + start to hi, writing the
    full vectors to the vector file on the way (before the graph has them: progress is recorded
    only after both). Picklable, so a backend may build shards in other processes; each loads the
    model itself."""

    def __init__(self, data_dir: Path, ckpt_path: Path, device: str, name: str, meta: dict,
                 encode_batch: int, store_text: bool, model=None, out: Path | None = None, first_row: int = 0):
        self.data_dir, self.ckpt_path, self.device, self.name = Path(data_dir), Path(ckpt_path), str(device), name
        self.meta, self.encode_batch, self.store_text = meta, int(encode_batch), store_text
        self._model = model
        # where the full vectors go: the index's vector file, or an encoded part (rows from first_row)
        self.out, self.first_row = Path(out) if out else vectors_path(self.data_dir, name), int(first_row)

    def __getstate__(self):
        return dict(self.__dict__, _model=None)

    def single_thread(self):
        import torch
        torch.set_num_threads(1)
        self.device = "cpu"

    def _load(self):
        import torch
        from ..corpus import load_vocab
        from ..encode import load_model
        if self._model is None:
            vocab, _ = load_vocab(self.data_dir)
            self._model, _ = load_model(self.ckpt_path, vocab.fingerprint, torch.device(self.device))
        return self._model

    def sample(self, rows: np.ndarray) -> np.ndarray:
        """The index vectors of these rows (for the graph's centre)."""
        import torch
        from ..encode import encode_rows
        from ..vocab import TokenTable
        model = self._load()
        table = TokenTable.read(self.data_dir / "passages_tok.parquet", "passage_id")
        vecs = encode_rows(model, table, rows, "passage", torch.device(self.device), batch_size=512)
        cfg = model.config
        return index_vectors(vecs, cfg["out_dim"], cfg["lex_dim"], self.meta["index_dim"])

    def batches(self, lo: int, hi: int, start: int):
        import torch
        from ..encode import encode_rows
        from ..vocab import TokenTable
        model = self._load()
        table = TokenTable.read(self.data_dir / "passages_tok.parquet", "passage_id")
        texts = None
        if self.store_text:
            texts = pq.read_table(self.data_dir / "passages.parquet", columns=["text"])["text"]
            if len(texts) != len(table):
                raise StageError("passages.parquet and passages_tok.parquet differ in length: re-run s02_tkn_ms_marco.py")
        full = VectorWriter(self.out)
        cfg, device = model.config, torch.device(self.device)
        try:
            for s in range(lo + start, hi, self.encode_batch):
                rows = np.arange(s, min(s + self.encode_batch, hi))
                vecs = encode_rows(model, table, rows, "passage", device, batch_size=512)
                full.write(s - self.first_row, vecs)
                docs = texts.slice(s, len(rows)).to_pylist() if texts is not None else None
                yield rows, table.ids[rows], index_vectors(vecs, cfg["out_dim"], cfg["lex_dim"], self.meta["index_dim"]), docs
        finally:
            full.close()


CENTRE_SAMPLE = 20_000  # passages whose mean centres the faiss graph (any centre keeps the ranking exact)


def sample_rows(total: int, n: int = CENTRE_SAMPLE) -> np.ndarray:
    """Evenly spaced rows across the whole table (the same for a resumed build)."""
    return np.unique(np.linspace(0, total - 1, min(n, total)).astype(np.int64))


def precision(device) -> dict:
    """How vectors are computed and stored (recorded with each index and encoded part)."""
    return {"compute": "bf16-autocast" if str(device).startswith("cuda") else "fp32", "stored": "float16"}


def build_index(data_dir: Path, ckpt_path: Path, device, opts: BuildOptions | None = None, log=print,
                on_saved=None, script: str = "s05_encode_docs_to_chromadb.py") -> dict:
    """Encode and index every passage of data_dir with the checkpoint; resume a killed build of the
    same index; rebuild a complete one whose files were damaged. Returns the state to activate."""
    from tqdm import tqdm
    from ..corpus import load_vocab
    from ..encode import load_model
    from ..passage_store import build as build_text_store
    opts = opts or BuildOptions()
    d = Path(data_dir)
    backend_name = opts.resolved_backend()
    backend = store.BACKENDS[backend_name]
    if backend is faiss_graph and opts.store_text:
        raise BadSetting("--store-text is for --backend chroma")
    if backend is not faiss_graph and opts.codes not in ("auto", "flat"):
        raise BadSetting(f"--graph-codes {opts.codes} is for --backend faiss (Chroma stores float32 vectors)")
    acquire_writer_lock(d / "indexes", hint=" (or run a Chroma server and pass --chroma-host)")
    vocab, vm = load_vocab(d)
    ptm = require(d / "passages_tok.parquet")
    check_lineage(ptm, "vocab", vm, "s02_tkn_ms_marco.py")
    model, ckpt = load_model(ckpt_path, vocab.fingerprint, device)  # refuses an unfinished checkpoint
    build_text_store(d)  # what s09 shows: text looked up by id, memory-mapped
    total = pq.ParquetFile(d / "passages_tok.parquet").metadata.num_rows
    cfg = model.config
    index_dim = min(int(opts.index_dim), model.dim) if cfg["lex_dim"] else model.dim
    check_index_dim(cfg["out_dim"], cfg["lex_dim"], index_dim)  # now, not after the first batch
    # the graph's build settings; ef_search only when asked for (else the size decides it, below)
    graph_hnsw = {k: v for k, v in dict(HNSW, **opts.hnsw).items()
                  if k != "space" and (k != "ef_search" or "ef_search" in opts.hnsw)}
    job = BuildJob(d, "", {}, total, graph_hnsw, Path(), save_every=opts.save_every,
                   options={"write_batch": opts.write_batch, "store_text": opts.store_text, "host": opts.host,
                            "port": opts.port}, log=log, on_saved=on_saved)
    shards = opts.shards or backend.auto_shards(total, job)
    # another backend or shard count is another index (a rebuild never touches the one s09 may be querying)
    key = dict(opts.hnsw, backend=backend_name, **({"shards": shards} if shards > 1 and backend is faiss_graph else {}))
    codes = "flat"
    if backend is faiss_graph:
        key["centred"] = True  # a graph over centred vectors is another graph than before
        codes = faiss_graph.auto_codes(total) if opts.codes == "auto" else opts.codes
        if codes != "flat":
            key["codes"] = codes
        job.options["codes"] = codes
    if "max_neighbors" not in opts.hnsw:  # the size decides (index_name fills in defaults: M 16 names stay)
        key["max_neighbors"] = job.hnsw["max_neighbors"] = auto_max_neighbors(
            total, codes if backend is faiss_graph else None)
    name = store.index_name(ckpt["fingerprint"], key, index_dim if index_dim < model.dim else None)
    if backend is chroma_graph and shards > 1:
        name = f"{name}-x{shards}"  # its own state: never confused with a one-collection build
    meta = {"model_fingerprint": ckpt["fingerprint"], "vocab_fingerprint": vocab.fingerprint,
            "passages_tok": ptm["fingerprint"], "dim": model.dim, "index_dim": index_dim,
            "out_dim": cfg["out_dim"], "lex_dim": cfg["lex_dim"], "depth": int(opts.depth), "full_vectors": True,
            "store_text": opts.store_text}
    if backend is faiss_graph:
        meta["backend"] = faiss_graph.NAME
    pp = progress_path(d, name)
    st = read_progress(pp)
    bad = st and st.get("complete") and st.get("name") == name and store.index_damage(d, st)
    if bad:
        log(f"{bad}: building index {name} again")
        pp.unlink()
        st = None
    ids = pq.read_table(d / "passages_tok.parquet", columns=["passage_id"])["passage_id"].to_numpy()
    create_vector_file(d, name, ids, model.dim, resume=same_build(st, meta, total))
    job.name, job.meta, job.progress_path, job.shards = name, meta, pp, shards
    done_parts = parts.find(d, meta, total, script)
    if done_parts and opts.store_text:
        raise BadSetting("--store-text cannot build from encoded parts (they hold no text): drop one of them")
    if done_parts:
        log(f"building index {name} from {len(done_parts)} encoded parts ({parts.folder(d, ckpt['fingerprint'], ptm['fingerprint'])})")
        source = parts.PartsSource(d, name, meta, done_parts, ids)
        meta_parts = [{k: p[k] for k in ("part", "rows", "precision", "device")} for p in done_parts]
    else:
        source = EncodeSource(d, ckpt_path, device, name, meta, opts.encode_batch, opts.store_text, model=model)
        meta_parts = None
    if backend is faiss_graph and not (same_build(st, meta, total) and "centre" in st
                                       and (codes == "flat" or "sq_trained" in st)):
        x = source.sample(sample_rows(total))
        job.options["centre"] = x.mean(0)
        if codes == "sq8":
            job.options["train"] = x - job.options["centre"]  # the quantiser sees what the graph holds
    with tqdm(total=total, desc=f"index {name}" + (f" ({shards} shards)" if shards > 1 else ""), unit="passage",
              mininterval=1) as bar:
        job.progress = bar
        state = backend.build(job, source)
    # ef_search is a query-time setting: recorded (and applied by the backend) without a rebuild
    ef = opts.hnsw.get("ef_search") or auto_ef_search(total)
    state = dict(state, backend=backend_name, hnsw=dict(state.get("hnsw") or HNSW, ef_search=ef),
                 precision=precision(device), **({"encoded_parts": meta_parts} if meta_parts else {}))
    from ..query_encoder import export
    qe = export(model, d, name)
    state = store.record_files(d, state)  # sizes (and hashes where small), checked before s09 maps them
    write_json(pp, state)
    return dict(state, checkpoint=str(Path(ckpt_path).name), stage=ckpt.get("stage"),
                checkpoint_manifest=require(ckpt_path)["fingerprint"], query_encoder=qe)


def encode_part(data_dir: Path, ckpt_path: Path, device, part: tuple[int, int], encode_batch: int = ENCODE_BATCH,
                log=print, on_saved=None) -> dict:
    """Encode part I of N of the passages with the checkpoint (no index, no lock); resume a killed
    part. Returns its state."""
    from tqdm import tqdm
    from ..corpus import load_vocab
    from ..encode import load_model
    i, n = part
    d = Path(data_dir)
    vocab, vm = load_vocab(d)
    ptm = require(d / "passages_tok.parquet")
    check_lineage(ptm, "vocab", vm, "s02_tkn_ms_marco.py")
    model, ckpt = load_model(ckpt_path, vocab.fingerprint, device)
    total = pq.ParquetFile(d / "passages_tok.parquet").metadata.num_rows
    lo, hi = parts.rows(total, i, n)
    vp, sp = parts.paths(d, ckpt["fingerprint"], ptm["fingerprint"], i, n)
    meta = {"model_fingerprint": ckpt["fingerprint"], "passages_tok": ptm["fingerprint"], "dim": model.dim,
            "part": [i, n], "rows": [lo, hi], "precision": precision(device), "device": str(device)}
    st = read_progress(sp)
    if not same_build(st, {k: v for k, v in meta.items() if k != "device"}, hi - lo) or not vp.exists():
        import numpy as np
        vp.parent.mkdir(parents=True, exist_ok=True)
        from ..artifacts import atomic_path
        with atomic_path(vp) as tmp:
            np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(hi - lo, model.dim)).flush()
        st = dict(meta, total=hi - lo, done=0, complete=False)
        write_json(sp, st)
    elif st.get("complete"):
        log(f"encoded part {i}/{n} is already complete ({hi - lo:,} passages)")
        return st
    elif st["done"]:
        log(f"resuming part {i}/{n} at passage {st['done']:,} of {hi - lo:,}")
    src = EncodeSource(d, ckpt_path, device, "", {"index_dim": model.dim}, encode_batch, False, model=model,
                       out=vp, first_row=lo)
    with tqdm(total=hi - lo, initial=st["done"], desc=f"part {i}/{n}", unit="passage", mininterval=1) as bar:
        for rows_, _, _, _ in src.batches(lo, hi, st["done"]):
            st["done"] = int(rows_[-1]) + 1 - lo  # the rows are in the file (pwrite) before progress says so
            write_json(sp, st)
            bar.update(len(rows_))
            if on_saved is not None:
                on_saved(st["done"])
    st["complete"] = True
    write_json(sp, st)
    return st


def build_and_activate(data_dir: Path, ckpt_path: Path, device, opts: BuildOptions, extra: dict | None = None,
                       activate: bool = True, log=print, on_saved=None,
                       script: str = "s05_encode_docs_to_chromadb.py") -> tuple[dict, dict | None]:
    """s05's and s08's work: build the checkpoint's index and (unless told not to) make it the one
    s09 queries. Returns (its state, the previously active pointer or None)."""
    try:
        old = store.active(data_dir)
    except StageError:
        old = None
    state = build_index(data_dir, ckpt_path, device, opts, log=log, on_saved=on_saved, script=script)
    # BM25 beside the index (a no-op when data/bm25 is current): hybrid's first query, in s09 or s11,
    # then never waits for it to be built
    from .. import bm25
    bm25.load_or_build(data_dir, log=log, **bm25.stage_params(data_dir))
    if activate:
        store.activate(data_dir, state, dict({"chroma_host": opts.host, "chroma_port": opts.port}, **(extra or {})))
    return state, old
