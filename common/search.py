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
DEFAULT_WEIGHTS = (0.0, 0.35)  # hybrid's (cosine, semantic-part) weights until s10 tunes them
FUSION_DEPTH = 200    # each system's candidates that hybrid fuses (chosen on validation in s10)


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
                 mode: str | None = "dense", weights: tuple | None = None):
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
        self.set_mode(mode, weights)

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

    def set_mode(self, mode: str | None, weights: tuple | None = None):
        """dense | bm25 | hybrid; None: whichever won on validation in s10 (hybrid if s10 never ran)."""
        from .evaluation import load_hybrid
        tuned = load_hybrid(self.data_dir) or {}
        self.mode = mode or tuned.get("best_mode", "hybrid")
        if self.mode not in MODES:
            raise StageError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        self.weights = weights or (tuned.get("w_dense", DEFAULT_WEIGHTS[0]), tuned.get("w_sem", DEFAULT_WEIGHTS[1]))
        if self.mode != "dense" and self.bm25 is None:
            from . import bm25
            self.bm25 = bm25.load_or_build(self.data_dir)
        return self.mode

    def _vectors_for(self, ids) -> np.ndarray:
        """The candidates' vectors as stored in the index."""
        got = self.col.get(ids=[str(int(i)) for i in ids], include=["embeddings"])
        m = {k: v for k, v in zip(got["ids"], got["embeddings"])}
        dim = self.active["dim"]
        return np.stack([np.asarray(m[str(int(i))], dtype=np.float32) if str(int(i)) in m
                         else np.zeros(dim, np.float32) for i in ids]) if len(ids) else np.zeros((0, dim), np.float32)

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
        depth = max(k, FUSION_DEPTH)
        if self.mode == "bm25":
            if not self.bm25.tokens([text])[0]:
                raise QueryError("none of the query's words are in the vocabulary: try other words")
            b_ids, b_sc = self.bm25.search([text], k)
            ids, scores = b_ids[0].tolist(), b_sc[0].tolist()
        else:
            from .retrieval import hybrid_features, hybrid_rank
            d_ids = []
            if dense_ok:
                d_ids = vector_store.search(self.col, v, depth, with_docs=False, total=self.active.get("total"))[0][0]
            cand, feats = hybrid_features(v[0], d_ids, self.bm25, text, self._vectors_for,
                                          self.model.config["out_dim"], depth)
            w = self.weights if dense_ok else (0.0, 0.0)  # no word the model knows: BM25 alone
            ids, scores = hybrid_rank(cand, feats, w[0], w[1], k)
            ids, scores = ids.tolist(), scores.tolist()
        texts = self._texts_for(ids)
        return [Hit(r + 1, float(s), int(p), t) for r, (p, s, t) in enumerate(zip(ids, scores, texts))]
