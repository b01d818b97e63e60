import collections

import pyarrow.parquet as pq

from common import msmarco
from common.triplets import random_triplets
from helpers import msmarco_row as _row


def _combine(tmp_path, splits):
    q, p = tmp_path / "queries.parquet", tmp_path / "passages.parquet"
    rep = msmarco.combine(q, p, [(s, [rows]) for s, rows in splits.items()])
    return pq.read_table(q), pq.read_table(p), rep


def test_positives_are_only_selected_and_negatives_never_own_candidates(tmp_path):
    rows = [_row(i, f"query {i}", [f"q{i} passage {j}" for j in range(10)], [1 if j == i % 10 else 0 for j in range(10)])
            for i in range(60)]
    rows.append(_row(999, "no answer", ["orphan passage a", "orphan passage b"], [0, 0]))
    queries, passages, _ = _combine(tmp_path, {"train": rows})
    trip = random_triplets(queries, passages["passage_id"].to_numpy(), seed=3)
    by_q = {q: (set(p), {x for x, s in zip(p, sel) if s}) for q, p, sel in
            zip(*(queries[c].to_pylist() for c in ("query_id", "passage_ids", "is_selected")))}
    assert trip.num_rows == 60  # one positive each; the unanswered query gives none
    for q, pos, neg in zip(*(trip[c].to_pylist() for c in ("query_id", "pos_id", "neg_id"))):
        cands, positives = by_q[q]
        assert pos in positives and len(positives) == 1
        assert neg not in cands and neg not in positives
    # the unanswered query's passages are still in the pool
    assert passages.num_rows == 60 * 10 + 2


def test_no_query_in_two_splits_and_passage_ids_stable(tmp_path):
    tr = [_row(1, "a", ["x text"], [1]), _row(2, "b", ["y text"], [1])]
    va = [_row(2, "b again", ["z text"], [1]), _row(3, "c", ["x text"], [1])]
    queries, passages, rep = _combine(tmp_path, {"train": tr, "validation": va})
    split_of = collections.defaultdict(set)
    for q, s in zip(queries["query_id"].to_pylist(), queries["split"].to_pylist()):
        split_of[q].add(s)
    assert all(len(v) == 1 for v in split_of.values())
    assert rep["counts"]["duplicate_query_id"] == 1
    # the same text gets the same id wherever it appears, and is stored once
    ids = dict(zip(queries["query_id"].to_pylist(), queries["passage_ids"].to_pylist()))
    assert ids[1] == ids[3] == [msmarco.passage_id("x text")]
    assert passages.num_rows == 2


def test_bad_rows_are_counted_not_fatal(tmp_path):
    rows = [
        _row(1, "good", ["fine passage"], [1]),
        {"query_id": None, "query": "no id"},
        _row(2, "", ["p"], [1]),
        _row(3, 12345, ["p"], [1]),
        {"query_id": 4, "query": "null passages", "passages": None},
        _row(5, "mismatch", ["a passage", "b passage"], [1]),
        _row(6, "empties", ["", None, 7, "ok passage"], [0, 1, 0, 1]),
        _row(7, "long", ["w " * 50_000], [1]),
        _row(1, "duplicate id", ["other"], [1]),
        _row(8, "caf\u00c3\u00a9 mojibake", ["it\u00e2\u20ac\u2122s fixed"], [1]),
        _row(9, "surrogate \ud800 text", ["bad \udcff bytes"], [1]),
        "not a dict",
    ]
    queries, passages, rep = _combine(tmp_path, {"train": rows})
    c = rep["counts"]
    assert c["missing_query_id"] == 1 and c["empty_query"] == 2 and c["no_passages"] == 1
    assert c["mismatched_passage_lists"] == 1 and c["empty_passage"] == 3
    assert c["long_passage_truncated"] == 1 and c["duplicate_query_id"] == 1 and c["not_a_record"] == 1
    texts = passages["text"].to_pylist()
    assert "it's fixed" in texts
    assert max(len(t) for t in texts) <= msmarco.MAX_PASSAGE_CHARS
    assert set(queries["query_id"].to_pylist()) == {1, 4, 5, 6, 7, 8, 9}


def test_mining_batch_by_batch_draws_as_one_pass():
    """s06 mines each search batch as it comes, carrying one random stream: the negatives are the
    ones a single pass over every query draws."""
    import numpy as np
    from common.mining import mine
    rng = np.random.default_rng(3)
    n, depth = 40, 12
    qids = np.arange(n) + 1000
    pos = [{int(q) * 10} for q in qids]
    cand = [set(p) | {int(q) * 10 + 1} for p, q in zip(pos, qids)]
    ranked = [rng.permutation(np.arange(1, 200))[:depth].tolist() + [int(q) * 10] for q in qids]
    scores = [sorted(rng.random(depth + 1).tolist(), reverse=True) for _ in qids]
    pos_sc = np.full(n, 0.5)
    args = (2, depth, 2, 0.0)
    whole, whole_stats = mine(qids, pos, cand, ranked, scores, pos_sc, *args, seed=7)
    g = np.random.default_rng(7)
    parts, stats = [], collections.Counter()
    for s in range(0, n, 7):
        t, st = mine(qids[s:s + 7], pos[s:s + 7], cand[s:s + 7], ranked[s:s + 7], scores[s:s + 7], pos_sc[s:s + 7],
                     *args, seed=g)
        parts.append(t)
        stats.update(st)
    import pyarrow as pa
    assert pa.concat_tables(parts).equals(whole) and whole.num_rows > n
    assert dict(stats) == whole_stats


def test_s06_mines_bm25s_ranking_too(pipeline):
    """--miner bm25: every negative sits at ranks 3..30 of BM25's ranking for its question and is
    never one of its selected passages; --miner both takes one from each ranking."""
    import pyarrow.parquet as pq
    from common import bm25
    from common.triplets import positives
    from helpers import run
    d, _ = pipeline
    count = {}
    for miner in ("model", "bm25", "both"):
        run("s06_mine_hard_negatives.py", d, "--miner", miner)
        t = pq.read_table(d / "hard_negatives.parquet").to_pandas()
        count[miner] = len(t)
        if miner == "bm25":
            q = pq.read_table(d / "queries.parquet").to_pandas()
            text = dict(zip(q["query_id"], q["query"]))
            sel = {r.query_id: set(positives(r.passage_ids, r.is_selected)) for r in q.itertuples()}
            idx = bm25.load_or_build(d, **bm25.stage_params(d))
            qs = sorted(set(t.query_id))
            rows, _ = idx.search_rows([text[x] for x in qs], 30)
            window = {x: set(idx.ids[r[3:30]].tolist()) for x, r in zip(qs, rows)}
            assert all(n in window[x] and n not in sel[x] for x, n in zip(t.query_id, t.neg_id))
            assert set(t.pos_id) <= set().union(*sel.values())
    assert count["bm25"] > 0 and count["both"] == count["model"] + count["bm25"]
