"""BM25 over the passage pool with the `bm25s` library (sparse-matrix BM25, Lucene variant), English
stopwords and a Snowball English stemmer (PyStemmer). k1 0.9, b 0.4 by default: Anserini's MS MARCO
passage settings. Built once from passages.parquet and saved under data/bm25/; its parameters are
part of its identity (data/bm25/source.json), so it is rebuilt when passages.parquet or any of them
changes. A passage with a title (a `title` column, BEIR corpora) is indexed as title + " " + text."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .artifacts import (StageError, damage, damaged, file_facts, load_npy_artifact, read_json_artifact,
                        remove_stale_tmp, require, swap_dir, tmp_path, write_json)
from .stages import script
from .text import normalize


# The defaults, defined once (s09, s10 and the tests take them from here)
K1 = 0.9
B = 0.4
METHOD = "lucene"
STOPWORDS = "en"      # bm25s's English list; None: keep every word
STEMMER = "english"   # a Snowball (PyStemmer) language; None: no stemming
STREAM_ROWS = 50_000  # passages tokenised at a time when data/bm25 is built
DEFAULTS = {"k1": K1, "b": B, "method": METHOD, "stopwords": STOPWORDS, "stemmer": STEMMER}
REBUILDS = f"{script('s10')} (it rebuilds data/bm25)"  # who to re-run when data/bm25 is damaged


def params(**kw) -> dict:
    """The full parameter set: DEFAULTS with the given (non-None) values replaced; refuses unknown names."""
    unknown = set(kw) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown BM25 parameter(s): {sorted(unknown)}")
    p = dict(DEFAULTS, **{k: v for k, v in kw.items() if v is not None})
    p["k1"], p["b"] = float(p["k1"]), float(p["b"])
    return p


def label(p: dict | None = None) -> str:
    """How reports name this BM25, e.g. "BM25 (bm25s, k1 0.9 b 0.4, stemmed)"."""
    p = params(**(p or {}))
    bits = [f"k1 {p['k1']:g} b {p['b']:g}"]
    if p["method"] != METHOD:
        bits.append(p["method"])
    if not p["stopwords"]:
        bits.append("no stopwords")
    bits.append("stemmed" if p["stemmer"] else "unstemmed")
    return "BM25 (bm25s, " + ", ".join(bits) + ")"


def _stemmer(lang=STEMMER):
    if not lang:
        return None
    import Stemmer
    return Stemmer.Stemmer(lang)


def indexed_texts(table) -> list[str]:
    """What BM25 indexes for each row of a passages table: title + " " + text where there is a title."""
    texts = table["text"].to_pylist()
    if "title" not in table.column_names:
        return texts
    return [f"{t} {x}" if t else x for t, x in zip(table["title"].to_pylist(), texts)]


class BM25Index:
    def __init__(self, retriever, ids: np.ndarray, p: dict | None = None):
        self.retriever = retriever
        self.ids = ids
        self.params = params(**(p or {}))
        self.stemmer = _stemmer(self.params["stemmer"])

    def tokens(self, queries: list[str]) -> list[list[str]]:
        import bm25s
        toks = bm25s.tokenize([normalize(q) for q in queries], stopwords=self.params["stopwords"],
                              stemmer=self.stemmer, return_ids=False, show_progress=False)
        vocab = self.retriever.vocab_dict
        return [[t for t in q if t in vocab] for q in toks]

    def search_rows(self, queries: list[str], k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per query, its top-k rows (of passages.parquet) and scores, best first: only passages
        that contain a query term (fewer than k, or none, when fewer do)."""
        toks = self.tokens(queries)
        k = min(k, len(self.ids))
        out_r, out_s = [], []
        # Each query from its terms' posting lists: ~30x faster than bm25s's retrieve(), which scores
        # every passage of the pool
        for t in toks:
            if not t:
                out_r.append(np.zeros(0, np.int64))
                out_s.append(np.zeros(0, np.float32))
                continue
            rows, sc = self._hits(t)
            kk = min(k, len(rows))
            top = np.argpartition(-sc, kk - 1)[:kk] if kk < len(rows) else np.arange(len(rows))
            top = top[np.argsort(-sc[top], kind="stable")]
            out_r.append(np.asarray(rows[top], np.int64))
            out_s.append(np.asarray(sc[top], np.float32))
        return out_r, out_s

    def search(self, queries: list[str], k: int):
        """(passage ids, scores), each (n_queries, k); a query's ranks past its hits are padded with
        row 0's id and score 0."""
        k = min(k, len(self.ids))
        out_i = np.zeros((len(queries), k), dtype=np.int64)
        out_s = np.zeros((len(queries), k), dtype=np.float32)
        for i, (r, sc) in enumerate(zip(*self.search_rows(queries, k))):
            out_i[i, :len(r)], out_s[i, :len(r)] = r, sc
        return self.ids[out_i], out_s

    def rows(self, ids) -> np.ndarray:
        """Row of each passage id in this index (the order of scores())."""
        if not hasattr(self, "_index"):
            from .corpus import IdIndex
            self._index = IdIndex(self.ids)
        return self._index.rows(ids)

    def hits(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the passages that contain a query term, rows ascending: the same scores
        as scores(), from the terms' posting lists, without a score for every passage of the pool."""
        return self._hits(self.tokens([query])[0])

    def _hits(self, toks: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if not toks:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        tid = np.asarray(self.retriever.get_tokens_ids(toks), dtype=np.int64)
        sc = self.retriever.scores
        indptr, indices, data = sc["indptr"], sc["indices"], sc["data"]
        if int((indptr[tid + 1] - indptr[tid]).sum()) > len(self.ids) // 8:  # common terms: dense is cheaper
            s = self.retriever.get_scores(toks)
            rows = np.flatnonzero(s)
            return rows, s[rows].astype(np.float32)
        rows = np.concatenate([indices[indptr[t]:indptr[t + 1]] for t in tid]).astype(np.int64)
        vals = np.concatenate([data[indptr[t]:indptr[t + 1]] for t in tid])
        u, inv = np.unique(rows, return_inverse=True)  # a term twice in the query counts twice, as in bm25s
        return u, np.bincount(inv, weights=vals, minlength=len(u)).astype(np.float32)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every pool passage for one query (row order = self.ids)."""
        t = self.tokens([query])[0]
        if not t:
            return np.zeros(len(self.ids), dtype=np.float32)
        return self.retriever.get_scores(t)


def build(texts: list[str], ids: np.ndarray, **kw):
    """A BM25 index of `texts` (kw: k1, b, method, stopwords, stemmer; DEFAULTS otherwise)."""
    import bm25s
    p = params(**kw)
    toks = bm25s.tokenize(texts, stopwords=p["stopwords"], stemmer=_stemmer(p["stemmer"]), show_progress=False)
    r = bm25s.BM25(method=p["method"], k1=p["k1"], b=p["b"])
    r.index(toks, show_progress=False)
    return BM25Index(r, np.asarray(ids, dtype=np.int64), p)


def tokenize_batches(batches, **kw) -> tuple[list[list[int]], dict]:
    """(token ids per passage, vocabulary) of texts that come a batch at a time: each batch through
    bm25s.tokenize (the rules queries are tokenised by), its ids renumbered into one vocabulary, so
    neither the pool's texts nor its string tokens are ever held at once. bm25s numbers its
    vocabulary in set order, so the ids differ from one whole-list call's; the index does not."""
    import bm25s
    p = params(**kw)
    stemmer, vocab, out = _stemmer(p["stemmer"]), {}, []
    for texts in batches:
        tok = bm25s.tokenize(texts, stopwords=p["stopwords"], stemmer=stemmer, show_progress=False)
        local = [0] * len(tok.vocab)
        for word, i in tok.vocab.items():
            local[i] = vocab.setdefault(word, len(vocab))
        out.extend([local[t] for t in doc] for doc in tok.ids)
    return out, vocab


def build_streaming(batches, ids: np.ndarray, **kw) -> BM25Index:
    """build() of texts that come a batch at a time (tokenize_batches): the same index."""
    import bm25s
    p = params(**kw)
    r = bm25s.BM25(method=p["method"], k1=p["k1"], b=p["b"])
    r.index(tokenize_batches(batches, **p), show_progress=False)
    return BM25Index(r, np.asarray(ids, dtype=np.int64), p)


def _passage_batches(path: Path, rows: int):
    import pyarrow as pa
    import pyarrow.parquet as pq
    f = pq.ParquetFile(path)
    cols = [c for c in ("text", "title") if c in f.schema_arrow.names]
    for b in f.iter_batches(batch_size=rows, columns=cols):
        yield indexed_texts(pa.Table.from_batches([b]))


def _load_checked(out: Path, st: dict, p: dict) -> BM25Index:
    """data/bm25 as saved, after comparing each file with the size (and hash) recorded at build
    time; StageError naming the first damaged file."""
    import bm25s
    for fname, facts in (st.get("files") or {}).items():
        bad = damage(out / fname, facts)
        if bad:
            raise damaged(out / fname, bad, REBUILDS)
    try:
        # memory-mapped: the posting lists stay in the page cache, shared by every process (s11's workers)
        r = bm25s.BM25.load(str(out), show_progress=False, mmap=True)
        ids = load_npy_artifact(out / "passage_ids.npy", REBUILDS)
    except StageError:
        raise
    except Exception as e:
        raise damaged(out, f"unreadable ({type(e).__name__})", REBUILDS)
    return BM25Index(r, np.asarray(ids, dtype=np.int64), p)


def stage_params(data_dir: Path) -> dict:
    """The parameters the pipeline's BM25 uses: those s10 evaluated with (data/reports/hybrid.json),
    DEFAULTS before s10 has run, so that s05/s08 build the index s09, s10 and s11 then load."""
    h = read_json_artifact(Path(data_dir) / "reports" / "hybrid.json", script("s10"), missing_ok=True) or {}
    return h.get("bm25") if isinstance(h.get("bm25"), dict) else {}


def load_or_build(data_dir: Path, log=print, repair: bool = True, **kw) -> BM25Index:
    """The pool's BM25 index, from data/bm25 if it was built from this passages.parquet with these
    parameters (kw: k1, b, method, stopwords, stemmer; DEFAULTS otherwise), else built and saved.
    A damaged data/bm25 is built again (repair, s10) or refused with one line (s09)."""
    import pyarrow.parquet as pq
    d = Path(data_dir)
    p = params(**kw)
    pm = require(d / "passages.parquet")
    out = d / "bm25"
    stamp = out / "source.json"
    if stamp.exists():
        try:
            st = read_json_artifact(stamp, REBUILDS)
            if st.get("passages") == pm["fingerprint"] and st.get("params") == p:
                return _load_checked(out, st, p)
        except StageError as e:
            if not repair:
                raise
            log(f"{str(e).split(': re-run')[0]}; building it again")
    remove_stale_tmp(out)
    log(f"building the {label(p)} index ...")
    ids = pq.read_table(d / "passages.parquet", columns=["passage_id"])["passage_id"].to_numpy()
    idx = build_streaming(_passage_batches(d / "passages.parquet", STREAM_ROWS), ids, **p)
    tmp = tmp_path(out)
    idx.retriever.save(str(tmp), show_progress=False)
    np.save(tmp / "passage_ids.npy", idx.ids)
    files = {f.name: file_facts(f) for f in sorted(tmp.iterdir()) if f.is_file()}
    write_json(tmp / "source.json", {"passages": pm["fingerprint"], "params": p, "files": files})
    swap_dir(tmp, out)  # there is always a complete index in place
    return idx
