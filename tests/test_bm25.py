"""BM25's posting-list path agrees with bm25s's own scoring."""
import numpy as np

from common import bm25

TEXTS = ["coffee is brewed from roasted coffee beans", "tea is an aromatic beverage", "the coffee shop sells tea",
         "dogs and cats are pets", "a cat sat on the mat", "green tea and black tea", "espresso is strong coffee",
         "running shoes for runners", "the runner runs daily", "beans on toast"]


def test_hits_are_the_nonzero_scores_and_single_queries_match_retrieve():
    idx = bm25.build(TEXTS, np.arange(100, 100 + len(TEXTS)))
    for q in ["coffee", "tea tea coffee", "running cat", "beans", "zzz unknown"]:
        rows, sc = idx.hits(q)
        full = idx.scores(q)
        assert rows.tolist() == np.flatnonzero(full).tolist()
        np.testing.assert_allclose(sc, full[rows], rtol=1e-5)
    qs = ["coffee beans", "tea", "cats and dogs", "runner", "toast"]
    docs, ref_s = idx.retriever.retrieve(idx.tokens(qs), k=3, show_progress=False, n_threads=1)  # bm25s's own
    ref_i = idx.ids[docs]
    got_i, got_s = idx.search(qs, 3)            # the posting-list path, query by query
    for j in range(len(qs)):
        np.testing.assert_allclose(got_s[j], ref_s[j], rtol=1e-5)
        assert set(got_i[j][got_s[j] > 0]) == set(ref_i[j][ref_s[j] > 0])


def _passages(d, texts, titles=None):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from common.artifacts import write_manifest
    cols = {"passage_id": np.arange(len(texts), dtype=np.int64), "text": texts}
    if titles is not None:
        cols["title"] = titles
    pq.write_table(pa.table(cols), d / "passages.parquet")
    write_manifest(d / "passages.parquet", "test")


def test_parameters_are_part_of_the_index(tmp_path):
    """k1 0.9, b 0.4 by default, recorded in data/bm25/source.json; another k1 rebuilds."""
    import json
    _passages(tmp_path, TEXTS)
    logs = []
    a = bm25.load_or_build(tmp_path, logs.append)
    assert len(logs) == 1 and a.params == bm25.DEFAULTS and (a.retriever.k1, a.retriever.b) == (0.9, 0.4)
    assert json.loads((tmp_path / "bm25" / "source.json").read_text())["params"] == bm25.DEFAULTS
    again = bm25.load_or_build(tmp_path, logs.append)
    assert len(logs) == 1 and again.retriever.k1 == 0.9  # loaded, not rebuilt
    b = bm25.load_or_build(tmp_path, logs.append, k1=1.2)
    assert len(logs) == 2 and b.retriever.k1 == 1.2 and b.params["k1"] == 1.2
    assert json.loads((tmp_path / "bm25" / "source.json").read_text())["params"]["k1"] == 1.2
    assert not np.allclose(a.scores("coffee tea"), b.scores("coffee tea"))
    np.testing.assert_allclose(b.scores("coffee tea"), bm25.build(TEXTS, np.arange(len(TEXTS)), k1=1.2).scores("coffee tea"))
    assert bm25.load_or_build(tmp_path, logs.append, k1=1.2) and len(logs) == 2


def test_a_title_is_indexed_with_its_text(tmp_path):
    _passages(tmp_path, TEXTS, ["" if i != 3 else "Okapi guide" for i in range(len(TEXTS))])
    idx = bm25.load_or_build(tmp_path, lambda *a: None)
    i, s = idx.search(["okapi"], 1)
    assert i[0, 0] == 3 and s[0, 0] > 0


def test_streaming_build_ranks_as_the_whole_list_build():
    """data/bm25 is built from passages a batch at a time (bm25.build_streaming); any batch size gives
    the rankings and scores of one bm25s.tokenize call over the whole list."""
    import numpy as np
    from common import bm25
    texts = ["The cat sat on the mat.", "Dogs and cats: a history", "", "the the the", "Sat on a mat, the dog slept",
             "Corporations are legal entities", "a corporation is an entity", "MATS and rugs", "café crème", "x"]
    ids = np.arange(100, 100 + len(texts))
    whole = bm25.build(texts, ids)
    qs = ["cat on a mat", "corporation entity", "the", "dog", "café", "nothing here"]
    for n in (1, 3, 100):
        part = bm25.build_streaming((texts[i:i + n] for i in range(0, len(texts), n)), ids)
        for q in qs:
            a, b = whole.search_rows([q], 10), part.search_rows([q], 10)
            assert np.array_equal(a[0][0], b[0][0]) and np.allclose(a[1][0], b[1][0], atol=1e-6), (n, q)
            assert np.allclose(whole.scores(q), part.scores(q), atol=1e-6)
