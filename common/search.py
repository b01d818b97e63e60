"""Answering queries against the active index (s09, s10)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import vector_store
from .artifacts import StageError
from .corpus import load_vocab
from .encode import encode_texts, load_model
from .text import normalize

MAX_QUERY_CHARS = 2000  # a query longer than this is cut (100 KB of text is not a question)


class QueryError(ValueError):
    """A query we cannot answer; the message says why, for the user."""


@dataclass
class Hit:
    rank: int
    score: float
    passage_id: int
    text: str


class Searcher:
    def __init__(self, data_dir: Path, device="cpu", chroma_host=None, chroma_port=8000, warm_up=True):
        import torch
        self.data_dir = Path(data_dir)
        self.active = vector_store.active(self.data_dir)
        self.vocab, _ = load_vocab(self.data_dir)
        if self.active.get("vocab_fingerprint") != self.vocab.fingerprint:
            raise StageError("the active index was built with another vocabulary: re-run s05_encode_docs_to_chromadb.py "
                             "and s08_reencode_all.py")
        self.device = torch.device(device)
        self.model, ckpt = load_model(self.data_dir / self.active["checkpoint"], self.vocab.fingerprint, self.device)
        if ckpt["fingerprint"] != self.active["model_fingerprint"]:
            raise StageError(f"{self.active['checkpoint']} changed since the index was built: re-run s08_reencode_all.py")
        host = chroma_host if chroma_host is not None else self.active.get("chroma_host")
        port = chroma_port if chroma_host is not None else self.active.get("chroma_port", 8000)
        self.client = vector_store.client(self.data_dir, host, port)
        self.col = vector_store.get_collection(self.client, self.active["name"])
        if self.col is None:
            raise StageError(f"collection {self.active['name']} is missing from Chroma: re-run s08_reencode_all.py")
        self._texts = None
        if warm_up:  # the first query loads the HNSW index from disk: pay it at start-up
            self.col.query(query_embeddings=np.zeros((1, self.active["dim"]), np.float32) + 0.1, n_results=1,
                           include=[])

    def _lookup(self, ids):
        if self._texts is None:
            import pyarrow.parquet as pq
            from .corpus import IdIndex
            t = pq.read_table(self.data_dir / "passages.parquet")
            self._texts = (IdIndex(t["passage_id"].to_numpy()), t["text"])
        idx, texts = self._texts
        return [texts[int(r)].as_py() for r in idx.rows(ids)]

    def check_query(self, text) -> str:
        text = normalize(text).strip()[:MAX_QUERY_CHARS]
        if not text:
            raise QueryError("empty query: type a question")
        return text

    def encode(self, texts: list[str]):
        v, known = encode_texts(self.model, self.vocab, texts, self.device, "query")
        return v, known

    def search(self, text: str, k: int = 10) -> list[Hit]:
        text = self.check_query(text)
        v, known = self.encode([text])
        if known[0] == 0:
            raise QueryError("none of the query's words are in the vocabulary: try other words")
        ids, scores, docs = vector_store.search(self.col, v, k, with_docs=self.active.get("store_text", True))
        ids, scores = ids[0], scores[0]
        texts = docs[0] if docs else self._lookup(ids)
        return [Hit(r + 1, s, p, t) for r, (p, s, t) in enumerate(zip(ids, scores, texts))]
