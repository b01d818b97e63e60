"""The vocabulary and tokenised tables.

The vocabulary is every word of the GloVe list (400,000 for GloVe 6B), plus <pad> and <unk>, in
GloVe's order: a checkpoint knows every word GloVe knows, so a user's questions and another
corpus (s10 --beir) bring no words that the corpus it was trained on happened to lack.
`s02 --vocab corpus` keeps only the GloVe words the corpus uses (the earlier behaviour). After
them come the teacher's word pieces (common/wordpiece.py): a word GloVe lacks is split into them
instead of becoming <unk> (`s02 --pieces none`: it stays <unk>).

Token ids are stored in Parquet as list<int32> columns, which read back as one flat numpy array
plus offsets: no per-passage Python lists, so 10M passages stream through in bounded memory.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .text import tokenize
from .wordpiece import PREFIX, WordPieces, entries

PAD, UNK = 0, 1

# Where s02 cuts a question and a passage (its --max-query-tokens, --max-passage-tokens). s02 records
# the limits in its tables' manifests, s04 copies them into the model's config, and every encoder
# reads them from there; these values are also what a checkpoint that predates them is read with.
MAX_QUERY_TOKENS = 64
MAX_PASSAGE_TOKENS = 256


# s02's outputs: (token table, the s00 table it tokenises, id column, text column, its limit)
TOKEN_TABLES = (("passages_tok.parquet", "passages.parquet", "passage_id", "text", "max_passage_tokens"),
                ("queries_tok.parquet", "queries.parquet", "query_id", "query", "max_query_tokens"))


def token_limits(passages_settings: dict | None = None, queries_settings: dict | None = None) -> dict:
    """{"max_query_tokens", "max_passage_tokens"} from the token tables' manifests' settings (one
    dict for both, or one each; the defaults for a folder tokenised before s02 recorded them)."""
    p = passages_settings or {}
    q = p if queries_settings is None else queries_settings
    return {"max_query_tokens": int(q.get("max_query_tokens", MAX_QUERY_TOKENS)),
            "max_passage_tokens": int(p.get("max_passage_tokens", MAX_PASSAGE_TOKENS))}


@dataclass
class Vocab:
    words: list[str]                       # id -> word; 0 = <pad>, 1 = <unk>
    glove_source: str = ""
    counts: np.ndarray | None = None       # corpus token count per id
    df: np.ndarray | None = None           # passages containing the id
    n_passages: int = 0
    index: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if not self.index:
            self.index = {w: i for i, w in enumerate(self.words)}

    @property
    def fingerprint(self) -> str:
        return hashlib.sha1("\n".join(self.words).encode()).hexdigest()[:16]

    def __len__(self):
        return len(self.words)

    @property
    def pieces(self) -> WordPieces:
        """The word pieces this vocabulary holds (none for one made with `s02 --pieces none`)."""
        if getattr(self, "_pieces", None) is None:
            self._pieces = WordPieces(self.index)
        return self._pieces

    def encode(self, text, max_len: int | None = None) -> list[int]:
        return _encode(tokenize(text), self.index, self.pieces, UNK, max_len)

    def save(self, path):
        d = {k: getattr(self, k) for k in ("words", "glove_source", "counts", "df", "n_passages")}
        with open(path, "wb") as f:
            pickle.dump(d, f, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path, producer: str | None = None) -> "Vocab":
        """Through a restricted unpickler (plain containers and numpy arrays only: a planted pickle
        cannot run code); a damaged file is one line naming it and `producer` (default s02)."""
        from .artifacts import damaged, load_pickle_artifact
        from .stages import script
        producer = producer or script("s02")
        d = load_pickle_artifact(path, producer)
        if not isinstance(d, dict) or not isinstance(d.get("words"), list):
            raise damaged(path, "not a vocabulary (no word list)", producer)
        try:
            return cls(**d)
        except TypeError as e:
            raise damaged(path, f"not a vocabulary ({e})", producer)

    def idf(self) -> np.ndarray:
        """BM25's IDF, log(1 + (N - df + 0.5) / (df + 0.5)): the pooling weights start from it."""
        n = max(self.n_passages, 1)
        df = self.df if self.df is not None else np.zeros(len(self), np.int64)
        return np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)


def _encode(words: list[str], index: dict, pieces: WordPieces, unk: int, max_len: int | None) -> list[int]:
    """Rows of these words: a word not in `index` as its pieces' rows, or `unk` where it has none."""
    get, ids = index.get, []
    for w in words:
        i = get(w)
        if i is not None:
            ids.append(i)
        else:
            split = pieces.split(w) if pieces else None
            ids.extend(split or (unk,))
        if max_len and len(ids) >= max_len:
            return ids[:max_len]
    return ids


# ---------------------------------------------------------------- tokenising in parallel
_BASE_INDEX: dict | None = None
_BASE_PIECES: WordPieces | None = None


def _tok_chunk(args):
    """Worker: texts -> (flat base row ids, -1 for unknown; lengths)."""
    texts, max_len = args
    flat, lens = [], []
    for t in texts:
        ids = _encode(tokenize(t), _BASE_INDEX, _BASE_PIECES, -1, max_len)
        flat.extend(ids)
        lens.append(len(ids))
    return np.asarray(flat, dtype=np.int32), np.asarray(lens, dtype=np.int32)


class CorpusTokenizer:
    """Tokenises text batches to base rows (GloVe's words, then the word pieces) in worker
    processes, then gives each row used a compact vocabulary id in order of first appearance
    (deterministic for a given input). Every piece has an id whether used or not: a question's
    unknown word is split with the same pieces as the corpus's words were."""

    def __init__(self, glove_words: list[str], workers: int = 2, whole: bool = True,
                 pieces: list[str] | None = None):
        global _BASE_INDEX, _BASE_PIECES
        glove_words = [w for w in glove_words if not w.startswith(PREFIX)]  # no word can pose as a piece
        base = glove_words + entries(pieces or [])
        _BASE_INDEX = {w: i for i, w in enumerate(base)}
        _BASE_PIECES = WordPieces(_BASE_INDEX)
        self.base_words = base
        self.n_glove = len(glove_words)
        self.piece_tokens = 0
        self.remap = np.full(len(base) + 1, -1, dtype=np.int64)  # last slot: unknown
        self.remap[-1] = UNK
        self.n = 2
        if whole:  # every GloVe word, in GloVe's order, then the pieces
            self.remap[:-1] = np.arange(2, len(base) + 2)
            self.n = len(base) + 2
        elif pieces:  # the pieces first, all of them
            self.remap[len(glove_words):-1] = np.arange(2, len(pieces) + 2)
            self.n = len(pieces) + 2
        self.counts = np.zeros(max(1024, self.n), dtype=np.int64)
        self.df = np.zeros(max(1024, self.n), dtype=np.int64)
        self.n_passages = 0
        self.unknown_tokens = 0
        self.total_tokens = 0
        ctx = mp.get_context("fork") if workers > 1 else None
        self.pool = ctx.Pool(workers) if ctx else None
        self.workers = workers

    def close(self):
        if self.pool:
            self.pool.close()
            self.pool.join()

    def _assign(self, g: np.ndarray) -> np.ndarray:
        g = np.where(g < 0, len(self.remap) - 1, g)
        new = self.remap[g] < 0
        if new.any():
            vals, first = np.unique(g[new], return_index=True)
            vals = vals[np.argsort(first)]
            self.remap[vals] = np.arange(self.n, self.n + len(vals))
            self.n += len(vals)
        return self.remap[g].astype(np.int32)

    def map_batches(self, text_batches, max_len: int, count_stats: bool):
        """Yield (flat ids, lengths) per input batch, in order."""
        def jobs():
            for texts in text_batches:
                if self.pool:
                    k = max(1, len(texts) // (self.workers * 2))
                    yield [(texts[i:i + k], max_len) for i in range(0, len(texts), k)]
                else:
                    yield [(texts, max_len)]
        for chunks in jobs():
            parts = self.pool.map(_tok_chunk, chunks) if self.pool else [_tok_chunk(c) for c in chunks]
            g = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32)
            lens = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int32)
            ids = self._assign(g)
            if count_stats:
                self.piece_tokens += int((g >= self.n_glove).sum())
                self._stats(ids, lens)
            yield ids, lens

    def _stats(self, ids, lens):
        if self.n > len(self.counts):
            grow = max(self.n, 2 * len(self.counts))
            self.counts = np.pad(self.counts, (0, grow - len(self.counts)))
            self.df = np.pad(self.df, (0, grow - len(self.df)))
        self.counts[:self.n] += np.bincount(ids, minlength=self.n)[:self.n]
        rows = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
        key = np.sort(rows << 32 | ids.astype(np.int64))  # np.unique is ~6x slower here
        uniq = key[np.r_[True, key[1:] != key[:-1]]] if len(key) else key
        self.df[:self.n] += np.bincount((uniq & 0xFFFFFFFF).astype(np.int64), minlength=self.n)[:self.n]
        self.n_passages += len(lens)
        self.unknown_tokens += int((ids == UNK).sum())
        self.total_tokens += int(len(ids))

    def vocab(self, glove_source: str) -> Vocab:
        words = ["<pad>", "<unk>"] + [""] * (self.n - 2)
        used = np.nonzero(self.remap[:-1] >= 0)[0]
        for gi in used:
            words[self.remap[gi]] = self.base_words[gi]
        # words seen only in queries come after the passage statistics: pad with zeros
        counts = np.pad(self.counts, (0, max(0, self.n - len(self.counts))))[:self.n].copy()
        df = np.pad(self.df, (0, max(0, self.n - len(self.df))))[:self.n].copy()
        return Vocab(words, glove_source, counts, df, self.n_passages)


def write_token_table(path, id_col: str, ids_iter, tok_iter):
    """Stream (ids, (flat, lens)) batches into Parquet: id column + list<int32> tokens."""
    schema = pa.schema([(id_col, pa.int64()), ("tokens", pa.list_(pa.int32()))])
    w = pq.ParquetWriter(path, schema)
    n = 0
    try:
        for ids, (flat, lens) in zip(ids_iter, tok_iter):
            offsets = np.zeros(len(lens) + 1, dtype=np.int32)
            np.cumsum(lens, out=offsets[1:])
            toks = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.int32()))
            w.write_table(pa.table({id_col: pa.array(ids, type=pa.int64()), "tokens": toks}, schema=schema))
            n += len(lens)
    finally:
        w.close()
    return n


@dataclass
class TokenTable:
    """Tokenised rows held as CSR arrays: tokens of row i are flat[offsets[i]:offsets[i+1]]."""
    ids: np.ndarray
    flat: np.ndarray
    offsets: np.ndarray

    @classmethod
    def read(cls, path, id_col: str, producer: str | None = None) -> "TokenTable":
        """The arrays memory-mapped from the table's cache (common/mapped_tokens.py), made from the
        Parquet on the first read."""
        from . import mapped_tokens
        got = mapped_tokens.load(path)
        if got is None:
            t = cls.read_parquet(path, id_col, producer)
            if not mapped_tokens.save(path, t.ids, t.flat, t.offsets):
                return t
            got = mapped_tokens.load(path)
            if got is None:  # written, yet not readable back: keep what was read
                return t
        return cls(*got)

    @classmethod
    def read_parquet(cls, path, id_col: str, producer: str | None = None) -> "TokenTable":
        """Row group by row group into arrays sized from the file's metadata: at most one row
        group more than the table itself in memory (a whole-table read and combine held 2x)."""
        from .artifacts import damaged, parquet_row_groups
        pf, groups = parquet_row_groups(path, producer, columns=[id_col, "tokens"])  # damage: one line naming its maker
        schema = pf.schema_arrow
        if not (pa.types.is_list(schema.field("tokens").type) and pa.types.is_integer(schema.field(id_col).type)):
            raise damaged(path, "not a token table (tokens must be a list of ids)", producer)
        md = pf.metadata
        leaf = [i for i in range(md.num_columns) if md.schema.column(i).path.split(".")[0] == "tokens"][0]
        bound = sum(md.row_group(g).column(leaf).num_values for g in range(md.num_row_groups))  # >= the tokens
        value_type = schema.field("tokens").type.value_type.to_pandas_dtype()
        n = md.num_rows
        ids, offsets, flat = np.empty(n, np.int64), np.zeros(n + 1, np.int64), np.empty(bound, value_type)
        r = v = 0
        for t in groups:
            col = t["tokens"]
            for chunk in col.chunks:
                o = chunk.offsets.to_numpy().astype(np.int64)
                vals = chunk.values.to_numpy()[o[0]:o[-1]]
                if v + len(vals) > bound or r + len(chunk) > n:
                    raise damaged(path, "its tokens do not match its metadata", producer)
                flat[v:v + len(vals)] = vals
                offsets[r + 1:r + 1 + len(chunk)] = o[1:] - o[0] + v
                v += len(vals)
                r += len(chunk)
            ids[r - len(t):r] = t[id_col].to_numpy()
        if r != n:
            raise damaged(path, f"{r:,} rows read of the {n:,} its metadata counts", producer)
        return cls(ids, flat[:v], offsets)

    def __len__(self):
        return len(self.ids)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def lengths_of(self, rows) -> np.ndarray:
        """The lengths of these rows only (every row's would be 10M subtractions per batch)."""
        rows = np.asarray(rows, np.int64)
        return self.offsets[rows + 1] - self.offsets[rows]

    def batch(self, rows: np.ndarray, max_len: int):
        """Right-padded int64 matrix and true lengths (at least 1: an empty text is one <unk>)."""
        lens = np.minimum(self.lengths_of(rows), max_len)
        width = max(1, int(lens.max()) if len(lens) else 1)
        out = np.zeros((len(rows), width), dtype=np.int64)
        for i, (r, n) in enumerate(zip(rows, lens)):
            s = self.offsets[r]
            out[i, :n] = self.flat[s:s + n]
        empty = lens == 0
        out[empty, 0] = UNK
        return out, np.maximum(lens, 1)


def iter_parquet_column(path, column: str, batch_rows: int):
    pf = pq.ParquetFile(path)
    for b in pf.iter_batches(batch_size=batch_rows, columns=[column]):
        yield b.column(0)


def recorded_token_limits(d) -> dict:
    """The limits a data folder's token tables were cut at (from their manifests)."""
    from .artifacts import require
    return token_limits(require(Path(d) / "passages_tok.parquet")["settings"],
                        require(Path(d) / "queries_tok.parquet")["settings"])


class FixedVocabTokenizer:
    """Tokenises with a vocabulary as it is (words outside it become <unk>): another dataset
    prepared for a trained model (s10 --source, --beir). Batches as CorpusTokenizer.map_batches."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab

    def map_batches(self, text_batches, max_len: int, count_stats: bool = False):
        for texts in text_batches:
            ids = [self.vocab.encode(t, max_len) for t in texts]
            lens = np.array([len(x) for x in ids], dtype=np.int32)
            flat = np.fromiter((i for x in ids for i in x), dtype=np.int32, count=int(lens.sum()))
            yield flat, lens


def tokenize_table(src, id_col: str, text_col: str, out, tokenizer, max_len: int, count_stats: bool = False,
                   batch_rows: int = 20_000, progress=None) -> int:
    """One token table: `src`'s ids and its texts' tokens (cut at max_len), streamed in batches into
    `out` (atomically). tokenizer: a CorpusTokenizer (s02) or a FixedVocabTokenizer. Returns the rows."""
    from .artifacts import atomic_path

    def texts():
        for col in iter_parquet_column(src, text_col, batch_rows):
            if progress is not None:
                progress.update(len(col))
            yield col.to_pylist()
    ids = (c.to_numpy() for c in iter_parquet_column(src, id_col, batch_rows))
    with atomic_path(out) as tmp:
        return write_token_table(tmp, id_col, ids, tokenizer.map_batches(texts(), max_len, count_stats))


def record_token_tables(d, script: str, limits: dict, vocab_manifest: dict, passages_manifest: dict,
                        queries_manifest: dict):
    """The token tables' manifests: the limits they were cut at (read by s04 into the model's
    config) and the vocabulary and table each was made from."""
    from .artifacts import write_manifest
    write_manifest(d / "passages_tok.parquet", script, limits, inputs={"vocab": vocab_manifest, "passages": passages_manifest})
    write_manifest(d / "queries_tok.parquet", script, limits, inputs={"vocab": vocab_manifest, "queries": queries_manifest})


def tokenize_with_main_vocab(main_dir, d, script: str, queries_manifest: dict, passages_manifest: dict,
                             sources: dict | None = None):
    """s02 for another dataset already in s00's layout under `d` (s10 --source, --beir): the main
    folder's vocabulary as it is (copied, so that `d` is a data folder of its own) and the main
    folder's token limits, every file recorded as made by `script`. sources: a token table's
    source other than s00's (BEIR passages: title and text)."""
    import shutil
    from .artifacts import require, write_manifest
    main_dir, d = Path(main_dir), Path(d)
    vm = require(main_dir / "vocab.pkl")
    limits = recorded_token_limits(main_dir)
    shutil.copyfile(main_dir / "vocab.pkl", d / "vocab.pkl")
    vm2 = write_manifest(d / "vocab.pkl", script, vm["settings"],
                         inputs={"queries": queries_manifest, "passages": passages_manifest}, fingerprint=vm["fingerprint"])
    tok = FixedVocabTokenizer(Vocab.load(d / "vocab.pkl", script))
    for name, src, id_col, text_col, limit in TOKEN_TABLES:
        tokenize_table((sources or {}).get(name, d / src), id_col, text_col, d / name, tok, limits[limit])
    record_token_tables(d, script, limits, vm2, passages_manifest, queries_manifest)
    return limits
