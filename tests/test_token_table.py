"""TokenTable: read row group by row group (10M passages' tokens without a second copy), the same
arrays a whole-table read gives; lengths of a batch's rows only; later reads memory-mapped from the
table's cache (common/mapped_tokens.py)."""
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.artifacts import StageError
from common.vocab import UNK, TokenTable, write_token_table


def _write(path, groups=5, rows=300, seed=0):
    rng = np.random.default_rng(seed)
    lens = [rng.integers(0, 9, size=rows) for _ in range(groups)]  # empty rows too
    toks = [(rng.integers(2, 500, size=int(l.sum())).astype(np.int32), l) for l in lens]
    ids = [np.arange(g * rows, (g + 1) * rows, dtype=np.int64) * 7 - 5 for g in range(groups)]
    write_token_table(path, "passage_id", iter(ids), iter(toks))


def test_read_by_row_groups_equals_a_whole_table_read(tmp_path):
    p = tmp_path / "t.parquet"
    _write(p)
    assert pq.ParquetFile(p).num_row_groups == 5
    t = TokenTable.read(p, "passage_id")
    whole = pq.read_table(p)
    col = whole["tokens"].combine_chunks()
    np.testing.assert_array_equal(t.ids, whole["passage_id"].to_numpy())
    np.testing.assert_array_equal(t.offsets, col.offsets.to_numpy().astype(np.int64))
    np.testing.assert_array_equal(t.flat, col.values.to_numpy())
    assert t.flat.dtype == np.int32 and len(t) == 1500
    rows = np.array([1499, 0, 3, 700])
    np.testing.assert_array_equal(t.lengths_of(rows), t.lengths()[rows])
    ids, lens = t.batch(rows, 4)
    for r, row, n in zip(rows, ids, lens):
        want = t.flat[t.offsets[r]:t.offsets[r + 1]][:4]
        assert (n, list(row[:n])) == ((len(want), list(want)) if len(want) else (1, [UNK]))


def test_later_reads_map_the_cache_and_a_stale_or_damaged_one_is_made_again(tmp_path):
    from common import mapped_tokens
    p = tmp_path / "t.parquet"
    _write(p)
    want = TokenTable.read_parquet(p, "passage_id")
    first = TokenTable.read(p, "passage_id")
    cache = mapped_tokens.cache_dir(p)
    assert sorted(f.name for f in cache.iterdir()) == ["flat.npy", "ids.npy", "offsets.npy", "source.json"]

    def same(t, w):
        return all(np.array_equal(getattr(t, k), getattr(w, k)) for k in ("ids", "flat", "offsets"))
    again = TokenTable.read(p, "passage_id")
    assert same(first, want) and same(again, want)
    assert all(isinstance(getattr(again, k), np.memmap) for k in ("ids", "flat", "offsets"))
    made = cache.stat().st_ino
    assert TokenTable.read(p, "passage_id") is not None and cache.stat().st_ino == made  # reused, not remade

    _write(p, groups=2, seed=1)  # s02 again: another table under the same name
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 1))
    assert same(TokenTable.read(p, "passage_id"), TokenTable.read_parquet(p, "passage_id"))
    (cache / "flat.npy").write_bytes(b"garbage")  # damaged: made again from the Parquet
    new = TokenTable.read_parquet(p, "passage_id")
    assert same(TokenTable.read(p, "passage_id"), new) and isinstance(TokenTable.read(p, "passage_id").flat, np.memmap)
    (cache / "offsets.npy").unlink()
    assert same(TokenTable.read(p, "passage_id"), new)


def test_a_table_that_is_not_tokens_is_one_line(tmp_path):
    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"passage_id": pa.array([1, 2], pa.int64()), "tokens": pa.array(["a", "b"])}), p)
    with pytest.raises(StageError, match="not a token table"):
        TokenTable.read(p, "passage_id", "s02_tkn_ms_marco.py")


def test_query_columns_as_arrays_give_the_labelled_questions_lists_give(tmp_path):
    """load_corpus and s10 hold queries.parquet's columns as arrays (Ragged for the candidate lists),
    not Python lists: the same labelled questions, in Python ints, from a file of several row groups."""
    from common.artifacts import write_manifest
    from common.corpus import Ragged, labelled_questions, read_query_columns
    rng = np.random.default_rng(0)
    n = 400
    pids = [list(rng.integers(-2**62, 2**62, size=int(rng.integers(0, 6)))) for _ in range(n)]
    sel = [[int(x) for x in rng.integers(-1, 2, size=len(p))] for p in pids]
    t = pa.table({"split": rng.choice(["train", "validation", "test"], n).tolist(),
                  "query_id": np.arange(n, dtype=np.int64) * 3 - 600, "query": [f"q {i}" for i in range(n)],
                  "passage_ids": pa.array(pids, pa.list_(pa.int64())), "is_selected": pa.array(sel, pa.list_(pa.int8()))})
    p = tmp_path / "queries.parquet"
    pq.write_table(t, p, row_group_size=64)
    write_manifest(p, "s00_combine_data.py", {})
    cols = ["split", "query_id", "query", "passage_ids", "is_selected"]
    new, old = read_query_columns(p, cols), t.to_pydict()
    assert isinstance(new["passage_ids"], Ragged) and len(new["passage_ids"]) == n
    assert [list(x) for x in new["passage_ids"]] == pids and new["is_selected"][7].tolist() == sel[7]
    for split in ("train", "validation", "test"):
        for m in (1, 2):
            a, b = labelled_questions(old, split, m), labelled_questions(new, split, m)
            assert len(b) > 0
            np.testing.assert_array_equal(a.qids, b.qids)
            assert (a.relevant, a.candidates, a.texts) == (b.relevant, b.candidates, b.texts)
            assert all(type(x) is int for c in b.candidates for x in c)
