"""Hybrid's weight tuning: the best validation MRR@10 wins, and near-ties go to the even split."""
import numpy as np

from common.evaluation import tune_hybrid


def _feats(dense, bm25):
    """One query, candidates 0 (relevant) and 1..: (cosine, semantic cosine, bm25) per candidate."""
    d = np.asarray(dense, float)
    return np.arange(len(d)), np.stack([d, d, np.asarray(bm25, float)], 1)


def test_a_clear_winner_is_taken():
    # BM25 prefers the wrong passage; only a dense-heavy fusion puts the relevant one first
    feats = [_feats([1.0, 0.0, 0.5], [0.0, 0.5, 1.0])] * 5  # first only when the dense weight > 2/3
    (a, b), grid = tune_hybrid([{0}] * 5, feats)
    assert grid[(a, b)] == max(grid.values()) == 1.0
    assert a + b > 0.5


def test_near_ties_go_to_the_even_split():
    # every weighting ranks the relevant passage first: all tie, the even split is chosen
    feats = [_feats([1.0, 0.0, 0.2], [1.0, 0.0, 0.3])] * 5
    (a, b), grid = tune_hybrid([{0}] * 5, feats)
    assert len(set(grid.values())) == 1
    assert abs(a + b - 0.5) < 1e-9 and a == 0.0
