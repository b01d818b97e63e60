"""Everything the training, encoding and evaluation stages read from s00-s03, loaded once, and the
lineage checks between those files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifacts import LineageMismatch, check_lineage, read_parquet_artifact, require
from .stages import script
from .triplets import positives
from .vocab import TokenTable, Vocab, token_limits


def find_sorted(sorted_keys, keys) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `keys` in the ascending array `sorted_keys`, and whether each is there."""
    keys = np.asarray(keys, dtype=np.int64)
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return pos, np.asarray(sorted_keys[pos]) == keys


class IdIndex:
    """Vectorised id -> row lookup (ids are int64 hashes)."""

    def __init__(self, ids: np.ndarray, producer: str | None = None):
        self.producer = producer or script("s02")  # the script that wrote the token table
        self.ids = np.asarray(ids, dtype=np.int64)
        self.order = np.argsort(self.ids, kind="stable")
        self.sorted = self.ids[self.order]

    def rows(self, ids) -> np.ndarray:
        pos, found = find_sorted(self.sorted, ids)
        if not found.all():
            raise LineageMismatch("the query or passage table", "tokenised tables", None, None, self.producer,
                                  f"ids missing from the tokenised tables: re-run {self.producer}")
        return self.order[pos]


class Ragged:
    """A list column as one array of values and row offsets: row i is values[offsets[i]:offsets[i+1]].
    Python lists of v2.1's 1M questions x 10 candidates held ~1.5 GB; these arrays ~0.1 GB."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray):
        self.values, self.offsets = values, np.asarray(offsets, np.int64)

    def __len__(self):
        return len(self.offsets) - 1

    def __getitem__(self, i):
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    def __iter__(self):
        v, o = self.values, self.offsets
        return (v[o[i]:o[i + 1]] for i in range(len(o) - 1))


def read_query_columns(path: Path, columns: list[str]) -> dict:
    """Columns of queries.parquet (checked as every artifact is): numbers as arrays, list columns as
    Ragged, text as an array of str."""
    import pyarrow as pa
    t = read_parquet_artifact(path, columns=columns)
    out = {}
    for name in columns:
        col = t[name].combine_chunks() if t[name].num_chunks != 1 else t[name].chunk(0)
        if pa.types.is_list(col.type):
            off = col.offsets.to_numpy()
            out[name] = Ragged(col.flatten().to_numpy(zero_copy_only=False), off - off[0])
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


@dataclass
class LabelledQuestions:
    """The questions of a split that have a selected passage, in the query table's order."""
    qids: np.ndarray             # int64
    relevant: list               # per question: the set of its selected passage ids
    candidates: list             # per question: its candidate passage ids (list, in order)
    texts: list | None = None    # per question: its text (when the table read had the query column)

    def __len__(self):
        return len(self.qids)


def labelled_questions(queries: dict, split: str, min_candidates: int = 1) -> LabelledQuestions:
    """The questions of `split` with at least one selected passage (and at least `min_candidates`
    candidates: 2 for the "rerank its own candidates" setting). `queries`: columns of queries.parquet
    as Python lists (split, query_id, passage_ids, is_selected, and query for the texts)."""
    qids, rel, cands, texts = [], [], [], []
    has_text = "query" in queries
    for n, (s, q, pids, sel) in enumerate(zip(queries["split"], queries["query_id"],
                                              queries["passage_ids"], queries["is_selected"])):
        if s != split:
            continue
        r = set(positives(pids, sel))
        if not r or len(pids) < min_candidates:
            continue
        qids.append(int(q))
        rel.append(r)
        cands.append([int(p) for p in pids])
        if has_text:
            texts.append(queries["query"][n])
    return LabelledQuestions(np.asarray(qids, dtype=np.int64), rel, cands, texts if has_text else None)


@dataclass
class Corpus:
    data_dir: Path
    vocab: Vocab
    vocab_manifest: dict
    ptok: TokenTable
    qtok: TokenTable
    queries: dict          # split, query_id, passage_ids, is_selected (read_query_columns)
    pidx: IdIndex
    qidx: IdIndex
    token_limits: dict     # max_query_tokens, max_passage_tokens: where s02 cut the tables

    def labelled(self, split: str) -> LabelledQuestions:
        return labelled_questions(self.queries, split)

    def split_queries(self, split: str):
        """(query ids, relevant passage-id sets) for queries of `split` with a positive."""
        q = self.labelled(split)
        return q.qids, q.relevant


def _maker(manifest: dict) -> str:
    """The script a manifest says wrote its file (s02, or s10 in a folder it prepared)."""
    return manifest.get("script") or script("s02")


def load_vocab(data_dir: Path):
    vm = require(data_dir / "vocab.pkl")
    return Vocab.load(data_dir / "vocab.pkl", _maker(vm)), vm


def load_corpus(data_dir: Path, need_queries: bool = True) -> Corpus:
    d = Path(data_dir)
    vocab, vm = load_vocab(d)
    tok = {}
    for name in ("passages_tok.parquet", "queries_tok.parquet"):
        tok[name] = require(d / name)
        check_lineage(tok[name], "vocab", vm, _maker(tok[name]))
    qm = require(d / "queries.parquet")
    check_lineage(vm, "queries", qm, _maker(vm))
    pm_tok, qm_tok = tok["passages_tok.parquet"], tok["queries_tok.parquet"]
    limits = token_limits(pm_tok["settings"], qm_tok["settings"])
    ptok = TokenTable.read(d / "passages_tok.parquet", "passage_id", _maker(pm_tok))
    qtok = TokenTable.read(d / "queries_tok.parquet", "query_id", _maker(qm_tok))
    queries = {}
    if need_queries:
        queries = read_query_columns(d / "queries.parquet", ["split", "query_id", "passage_ids", "is_selected"])
    return Corpus(d, vocab, vm, ptok, qtok, queries, IdIndex(ptok.ids, _maker(pm_tok)),
                  IdIndex(qtok.ids, _maker(qm_tok)), limits)
