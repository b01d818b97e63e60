"""Encode every passage with a checkpoint and index it in ChromaDB (s05 and s08)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from . import vector_store
from .artifacts import check_lineage, require
from .corpus import load_vocab
from .encode import encode_rows, load_model
from .vocab import TokenTable


def index_checkpoint(data_dir: Path, ckpt_path: Path, c, device, encode_batch: int = 2048,
                     write_batch: int = 5000, store_text: bool = True, max_len: int = 256,
                     hnsw: dict | None = None, log=print) -> dict:
    from tqdm import tqdm
    d = Path(data_dir)
    vocab, vm = load_vocab(d)
    ptm = require(d / "passages_tok.parquet")
    check_lineage(ptm, "vocab", vm, "s02_tkn_ms_marco.py")
    model, ckpt = load_model(ckpt_path, vocab.fingerprint, device)
    # a checkpoint without a manifest comes from a run that was killed before it finished
    require(ckpt_path)
    table = TokenTable.read(d / "passages_tok.parquet", "passage_id")
    total = len(table)
    write_batch = min(write_batch, c.get_max_batch_size())
    texts = None
    if store_text:
        texts = pq.read_table(d / "passages.parquet", columns=["text"])["text"]
        if len(texts) != total:
            from .artifacts import StageError
            raise StageError("passages.parquet and passages_tok.parquet differ in length: re-run s02_tkn_ms_marco.py")

    def batches(start):
        for s in range(start, total, encode_batch):
            rows = np.arange(s, min(s + encode_batch, total))
            vecs = encode_rows(model, table, rows, "passage", device, batch_size=512, max_len=max_len)
            docs = texts.slice(s, len(rows)).to_pylist() if texts is not None else None
            yield table.ids[rows], vecs, docs

    name = vector_store.collection_name(ckpt["fingerprint"])
    meta = {"model_fingerprint": ckpt["fingerprint"], "vocab_fingerprint": vocab.fingerprint,
            "passages_tok": ptm["fingerprint"], "dim": model.dim, "store_text": store_text}
    with tqdm(total=total, desc=f"index {name}", unit="passage", mininterval=1) as bar:
        state = vector_store.build(c, d, name, meta, total, batches, write_batch, progress=bar, hnsw=hnsw, log=log)
    return dict(state, checkpoint=str(Path(ckpt_path).name), stage=ckpt.get("stage"))
