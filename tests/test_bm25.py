"""BM25's fast paths for one query (posting lists) agree with bm25s's own scoring."""
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
    many_i, many_s = idx.search(qs, 3)          # five queries: bm25s retrieve()
    for j, q in enumerate(qs):
        one_i, one_s = idx.search([q], 3)       # one query: the posting-list path
        np.testing.assert_allclose(one_s[0], many_s[j], rtol=1e-5)
        assert set(one_i[0][one_s[0] > 0]) == set(many_i[j][many_s[j] > 0])
