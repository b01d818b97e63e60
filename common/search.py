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

MAX_QUERY_CHARS = 2000
MODES = ("dense", "bm25", "hybrid")
DEFAULT_ALPHA = 0.3   # dense weight in hybrid until s10 tunes it on validation
FUSION_DEPTH = 100    # each system's candidates that hybrid fuses  # a query longer than this is cut (100 KB of text is not a question)


class QueryError(ValueError):
    """A query we cannot answer; the message says why, for the user."""


@dataclass
class Hit:
    rank: int
    score: float
    passage_id: int
    text: str


class Searcher:
    def __init__(self, data_dir: Path, device="cpu", chroma_host=None, chroma_port=8000, warm_up=True,
                 mode: str | None = "dense", alpha: float | None = None):
        import torch
        self.bm25 = None
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
        if int(self.active.get("shards", 1)) > 1:
            self.col = vector_store.open_built(self.data_dir, self.active["name"])
        else:
            self.col = vector_store.get_collection(vector_store.client(self.data_dir, host, port), self.active["name"])
        if self.col is None:
            raise StageError(f"collection {self.active['name']} is missing from Chroma: re-run s08_reencode_all.py")
        self._texts = None
        # The first query loads the HNSW index from disk (seconds at 1M passages). Pay it at
        # start-up, or ("background") while the user types the first question.
        if warm_up == "background":
            import threading
            self._warm = threading.Thread(target=self._warm_up, daemon=True)
            self._warm.start()
        elif warm_up:
            self._warm_up()
        self.set_mode(mode, alpha)

    def _lookup(self, ids):
        if self._texts is None:
            from .passage_store import open_store
            self._texts = open_store(self.data_dir)
        return self._texts.get(ids)

    def check_query(self, text) -> str:
        text = normalize(text).strip()[:MAX_QUERY_CHARS]
        if not text:
            raise QueryError("empty query: type a question")
        return text

    def encode(self, texts: list[str]):
        v, known = encode_texts(self.model, self.vocab, texts, self.device, "query")
        return v, known

    def _warm_up(self):
        try:
            self.col.query(query_embeddings=np.full((1, self.active["dim"]), 0.1, np.float32), n_results=1,
                           include=["distances"])
        except Exception:
            pass  # a real query will report the problem

    def set_mode(self, mode: str | None, alpha: float | None = None):
        """dense | bm25 | hybrid; None: whichever won on validation in s10 (hybrid if s10 never ran)."""
        from .evaluation import load_hybrid
        tuned = load_hybrid(self.data_dir) or {}
        self.mode = mode or tuned.get("best_mode", "hybrid")
        if self.mode not in MODES:
            raise StageError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        self.alpha = alpha if alpha is not None else tuned.get("alpha", DEFAULT_ALPHA)
        self.norm = tuned.get("norm", "minmax")
        if self.mode != "dense" and self.bm25 is None:
            from . import bm25
            self.bm25 = bm25.load_or_build(self.data_dir)
        return self.mode

    def _texts_for(self, ids):
        if self.active.get("store_text", False):
            got = self.col.get(ids=[str(i) for i in ids], include=["documents"])
            m = dict(zip(got["ids"], got["documents"]))
            return [m.get(str(i), "") for i in ids]
        return self._lookup(ids)

    def search(self, text: str, k: int = 10) -> list[Hit]:
        text = self.check_query(text)
        k = max(1, min(int(k), 1000))
        v, known = self.encode([text])
        dense_ok = known[0] > 0
        if self.mode == "dense" or self.mode == "hybrid":
            if not dense_ok and (self.mode == "dense" or not self.bm25.tokens([text])[0]):
                raise QueryError("none of the query's words are in the vocabulary: try other words")
        if self.mode == "dense":
            ids, scores, docs = vector_store.search(self.col, v, k, with_docs=self.active.get("store_text", False),
                                                   total=self.active.get("total"))
            ids, scores = ids[0], scores[0]
            texts = docs[0] if docs else self._lookup(ids)
            return [Hit(r + 1, s, p, t) for r, (p, s, t) in enumerate(zip(ids, scores, texts))]
        from .retrieval import fuse
        depth = max(k, FUSION_DEPTH)
        b_ids, b_sc = self.bm25.search([text], depth)
        if self.mode == "bm25":
            if not self.bm25.tokens([text])[0]:
                raise QueryError("none of the query's words are in the vocabulary: try other words")
            ids, scores = b_ids[0][:k].tolist(), b_sc[0][:k].tolist()
        else:
            if dense_ok:
                d_ids, d_sc, _ = vector_store.search(self.col, v, depth, with_docs=False, total=self.active.get("total"))
                d_ids, d_sc = np.array(d_ids), np.array(d_sc, dtype=np.float32)
            else:  # no word the model knows: BM25 alone
                d_ids, d_sc = np.zeros((1, 0), np.int64), np.zeros((1, 0), np.float32)
            f_ids, f_sc = fuse(d_ids, d_sc, b_ids, b_sc, self.alpha if dense_ok else 0.0, k, self.norm)
            keep = np.isfinite(f_sc[0])
            ids, scores = f_ids[0][keep].tolist(), f_sc[0][keep].tolist()
        texts = self._texts_for(ids)
        return [Hit(r + 1, float(s), int(p), t) for r, (p, s, t) in enumerate(zip(ids, scores, texts))]
