"""Everything the training, encoding and evaluation stages read from s00-s03, loaded once, and the
lineage checks between those files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifacts import StageError, check_lineage, read_parquet_artifact, require
from .vocab import TokenTable, Vocab


def find_sorted(sorted_keys, keys) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `keys` in the ascending array `sorted_keys`, and whether each is there."""
    keys = np.asarray(keys, dtype=np.int64)
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return pos, np.asarray(sorted_keys[pos]) == keys


class IdIndex:
    """Vectorised id -> row lookup (ids are int64 hashes)."""

    def __init__(self, ids: np.ndarray):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.order = np.argsort(self.ids, kind="stable")
        self.sorted = self.ids[self.order]

    def rows(self, ids) -> np.ndarray:
        pos, found = find_sorted(self.sorted, ids)
        if not found.all():
            raise StageError("ids missing from the tokenised tables: re-run s02_tkn_ms_marco.py")
        return self.order[pos]


@dataclass
class Corpus:
    data_dir: Path
    vocab: Vocab
    vocab_manifest: dict
    ptok: TokenTable
    qtok: TokenTable
    queries: dict          # split, query_id, passage_ids, is_selected (python lists)
    pidx: IdIndex
    qidx: IdIndex

    def split_queries(self, split: str):
        """(query rows in qtok, relevant passage-id sets) for queries of `split` with a positive."""
        qids, rel = [], []
        for s, q, pids, sel in zip(self.queries["split"], self.queries["query_id"],
                                   self.queries["passage_ids"], self.queries["is_selected"]):
            if s == split:
                r = {p for p, x in zip(pids, sel) if x == 1}
                if r:
                    qids.append(q)
                    rel.append(r)
        return np.asarray(qids, dtype=np.int64), rel


def load_vocab(data_dir: Path):
    vm = require(data_dir / "vocab.pkl")
    return Vocab.load(data_dir / "vocab.pkl"), vm


def load_corpus(data_dir: Path, need_queries: bool = True) -> Corpus:
    d = Path(data_dir)
    vocab, vm = load_vocab(d)
    for name in ("passages_tok.parquet", "queries_tok.parquet"):
        check_lineage(require(d / name), "vocab", vm, "s02_tkn_ms_marco.py")
    qm = require(d / "queries.parquet")
    check_lineage(vm, "queries", qm, "s02_tkn_ms_marco.py")
    ptok = TokenTable.read(d / "passages_tok.parquet", "passage_id")
    qtok = TokenTable.read(d / "queries_tok.parquet", "query_id")
    queries = {}
    if need_queries:
        queries = read_parquet_artifact(d / "queries.parquet",
                                        columns=["split", "query_id", "passage_ids", "is_selected"]).to_pydict()
    return Corpus(d, vocab, vm, ptok, qtok, queries, IdIndex(ptok.ids), IdIndex(qtok.ids))
