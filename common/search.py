"""Answering queries against the active index (s09, s10)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifacts import BadSetting, StageError
from .corpus import load_vocab
from .index import store
from .retrieval import DEFAULT_WEIGHTS, FUSION_DEPTH, check_aligned, hybrid_features, hybrid_rank, lexical_rows
from .text import normalize

MAX_QUERY_CHARS = 2000
MAX_K = 1000  # results one query may ask for (s09's -k)
MODES = ("dense", "bm25", "hybrid")


class QueryError(ValueError):
    """A query we cannot answer; the message says why, for the user."""


@dataclass
class Hit:
    rank: int
    score: float
    passage_id: int
    text: str
    doc_id: str | None = None  # the corpus's own id where it has one (a BEIR corpus), else None


class Searcher:
    """Answers queries against the active index. The avg query tower runs in numpy (the table s05/s08
    export beside the index, common/query_encoder.py), so a CPU searcher never imports torch."""

    def __init__(self, data_dir: Path, device="cpu", chroma_host=None, chroma_port=8000, warm_up=True,
                 mode: str | None = "dense", weights: tuple | None = None):
        self.bm25 = None
        self._bm25_loader, self._bm25_error, self._warm, self._aligned = None, None, None, None
        self.data_dir = Path(data_dir)
        self.active = store.active(self.data_dir)
        store.check_index(self.data_dir, self.active)  # sizes and headers, before anything is mapped
        self.vocab, _ = load_vocab(self.data_dir)
        if self.active.get("vocab_fingerprint") != self.vocab.fingerprint:
            raise StageError("the active index was built with another vocabulary: re-run s05_encode_docs_to_chromadb.py "
                             "and s08_reencode_all.py")
        self._load_encoder(str(device))
        host = chroma_host if chroma_host is not None else self.active.get("chroma_host")
        port = chroma_port if chroma_host is not None else self.active.get("chroma_port", 8000)
        self.index = store.open_index(self.data_dir, self.active["name"], host=host, port=port)
        if self.index is None:
            from .index.state import progress_path
            pp = progress_path(self.data_dir, self.active["name"])
            raise StageError(f"index {self.active['name']} is missing or incomplete"
                             + ("" if pp.exists() else f" ({pp} not found)") + ": re-run s08_reencode_all.py")
        self._texts = None
        background = warm_up == "background"
        # The first query loads the HNSW index from disk (seconds at 1M passages), and hybrid needs
        # BM25 loaded: pay both at start-up, or (interactive) while the user types the first question.
        if background:
            import threading
            self._warm = threading.Thread(target=self._warm_up, daemon=True)
            self._warm.start()
        elif warm_up:
            self._warm_up()
        self.set_mode(mode, weights, background=background)

    def _load_encoder(self, device: str):
        self._np_encoder, self.model = None, None
        ckpt_path = self.data_dir / self.active["checkpoint"]
        if self.active.get("query_encoder") and device == "cpu":
            from .artifacts import read_json_artifact
            from .query_encoder import NumpyQueryEncoder, paths
            mp = Path(str(ckpt_path) + ".manifest.json")
            same_ckpt = ckpt_path.exists() and mp.exists() and \
                read_json_artifact(mp).get("fingerprint") == self.active.get("checkpoint_manifest")
            if same_ckpt:
                enc = None  # missing: the checkpoint itself still works
                if all(p.exists() for p in paths(self.data_dir, self.active["name"])):
                    try:
                        enc = NumpyQueryEncoder(self.data_dir, self.active["name"], self.vocab)
                    except Exception as e:  # damaged: say so (an index without recorded sizes)
                        raise StageError(f"{paths(self.data_dir, self.active['name'])[1]} (the query encoder) is "
                                         f"unreadable ({type(e).__name__}): re-run s08_reencode_all.py")
                if enc is not None and enc.fingerprint == self.active["model_fingerprint"]:
                    self._np_encoder = enc
                    self.out_dim = int(self.active["out_dim"])
                    return
        import torch
        from .encode import load_model
        self.device = torch.device(device)
        if self.device.type == "cpu":
            torch.set_num_threads(1)  # one query at a time: more threads only add overhead
        self.model, ckpt = load_model(ckpt_path, self.vocab.fingerprint, self.device)
        if ckpt["fingerprint"] != self.active["model_fingerprint"]:
            raise StageError(f"{self.active['checkpoint']} changed since the index was built: re-run s08_reencode_all.py")
        self.out_dim = int(self.model.config["out_dim"])

    def close(self):
        """Wait for the background loads (a process that exits while one of them is inside a native
        library can crash at interpreter shutdown), then release the index."""
        for t in (self._warm, self._bm25_loader):
            if t is not None:
                t.join()
        self.index.close()

    @property
    def encoder(self) -> str:
        return "numpy" if self._np_encoder is not None else "torch"

    def _lookup(self, ids):
        if self._texts is None:
            from .passage_store import open_store
            self._texts = open_store(self.data_dir)
        return self._texts.get(ids)

    def _doc_ids_for(self, ids) -> list:
        if self._texts is None:
            from .passage_store import open_store
            self._texts = open_store(self.data_dir)
        return self._texts.doc_ids(ids) or [None] * len(ids)

    def check_query(self, text) -> str:
        text = normalize(text).strip()[:MAX_QUERY_CHARS]
        if not text:
            raise QueryError("empty query: type a question")
        return text

    def encode(self, texts: list[str]):
        if self._np_encoder is not None:
            return self._np_encoder.encode(texts)
        from .encode import encode_texts
        return encode_texts(self.model, self.vocab, texts, self.device, "query")

    def _warm_up(self):
        try:
            self.index.warm_up()
        except Exception:
            pass  # a real query will report the problem

    def set_mode(self, mode: str | None, weights: tuple | None = None, background: bool = False):
        """dense | bm25 | hybrid; None: whichever won on validation in s10 (hybrid if s10 never ran).
        background=True loads BM25 in a thread (the first query that needs it waits for it)."""
        tuned = load_hybrid(self.data_dir) or {}
        self.mode = mode or tuned.get("best_mode", "hybrid")
        if self.mode not in MODES:
            raise BadSetting(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        self.weights = weights or (tuned.get("w_dense", DEFAULT_WEIGHTS[0]), tuned.get("w_sem", DEFAULT_WEIGHTS[1]))
        # every mode needs BM25: dense rescores its top rows beside the graph's (retrieval.LEXICAL_CANDIDATES)
        if self.bm25 is None and self._bm25_loader is None:
            if background:
                import threading
                self._bm25_loader = threading.Thread(target=self._load_bm25, args=(True,), daemon=True)
                self._bm25_loader.start()
            else:
                self._load_bm25()
        return self.mode

    def _load_bm25(self, keep_error: bool = False):
        from . import bm25
        try:
            # the parameters s10 evaluated (and tuned hybrid's weights) with; bm25's defaults otherwise
            self.bm25 = bm25.load_or_build(self.data_dir, repair=False,
                                           **((load_hybrid(self.data_dir) or {}).get("bm25") or {}))
        except Exception as e:
            if not keep_error:
                raise
            self._bm25_error = e  # the background load: the first query that needs BM25 reports it

    def _need_bm25(self):
        if self._bm25_loader is not None:
            self._bm25_loader.join()
            self._bm25_loader = None
            if self._bm25_error is not None:
                err, self._bm25_error = self._bm25_error, None
                raise err
        if self.bm25 is None:
            self._load_bm25()
        return self.bm25

    def _check_aligned(self, bm25):
        if not self._aligned:
            check_aligned(self.index.row_ids, bm25)  # once: hybrid works in rows of both
            self._aligned = True

    def prepare_all_modes(self):
        """Load everything any mode needs now (BM25, its alignment with the index, the text store), so
        that no request pays for it: s11 calls it before it says it is serving."""
        self._check_aligned(self._need_bm25())
        self._lookup([])
        return self

    def search(self, text: str, k: int = 10, mode: str | None = None) -> list[Hit]:
        """The top k of one query; mode: this searcher's (set_mode) unless given (s11 takes it per
        request: call prepare_all_modes first). A k outside 1..MAX_K is refused, never cut."""
        text = self.check_query(text)
        mode = mode or self.mode
        if mode not in MODES:
            raise QueryError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
            raise QueryError(f"k must be a whole number from 1 to {MAX_K:,}")
        k = int(k)
        v, known = self.encode([text])
        dense_ok = known[0] > 0
        bm25 = self._need_bm25()
        if mode == "dense" or mode == "hybrid":
            if not dense_ok and (mode == "dense" or not bm25.tokens([text])[0]):
                raise QueryError("none of the query's words are in the vocabulary: try other words")
        if mode == "dense":
            self._check_aligned(bm25)
            rows, scores = self.index.search(v, k, extra=lexical_rows(bm25, [text], k))
            rows, scores = rows[0], scores[0]
        elif mode == "bm25":
            if not bm25.tokens([text])[0]:
                raise QueryError("none of the query's words are in the vocabulary: try other words")
            b_rows, b_sc = bm25.search_rows([text], k)
            rows, scores = b_rows[0], b_sc[0]
        else:
            self._check_aligned(bm25)
            depth = max(k, FUSION_DEPTH)
            w = self.weights if dense_ok else (0.0, 0.0)  # no word the model knows: BM25 alone
            d_rows = self.index.search(v, depth)[0][0] if dense_ok else []
            cand, feats = hybrid_features(v[0], d_rows, bm25, text, self.index.vecs, self.out_dim, depth)
            rows, scores = hybrid_rank(cand, feats, w[0], w[1], k)
        ids = self.index.ids(rows).tolist()  # the edge: rows become passage ids here
        texts = self._lookup(ids)
        return [Hit(r + 1, float(s), int(p), t, doc) for r, (p, s, t, doc)
                in enumerate(zip(ids, np.asarray(scores).tolist(), texts, self._doc_ids_for(ids)))]


def load_hybrid(data_dir: Path) -> dict | None:
    """The hybrid weights and best mode s10 chose on validation (data/reports/hybrid.json); None
    before s10 has run; one line naming s10 when it is damaged or not what s10 writes."""
    from .artifacts import damaged, read_json_artifact
    p = Path(data_dir) / "reports" / "hybrid.json"
    h = read_json_artifact(p, "s10_evaluate.py", missing_ok=True)
    if h is None:
        return None
    num = (int, float)
    bad = [k for k in ("w_dense", "w_sem") if k in h and (not isinstance(h[k], num) or isinstance(h[k], bool))]
    if h.get("best_mode") is not None and h.get("best_mode") not in MODES:
        bad.append("best_mode")
    if h.get("bm25") is not None and not isinstance(h.get("bm25"), dict):
        bad.append("bm25")
    if bad:
        raise damaged(p, f"not what s10 writes (bad {', '.join(bad)})", "s10_evaluate.py")
    return h
