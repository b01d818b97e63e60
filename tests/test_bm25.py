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
