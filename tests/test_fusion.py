"""Hybrid's weight tuning: the best validation MRR@10 wins, and near-ties go to the middle of the tied weights."""
import numpy as np

from common.evaluation import TIE, pick_weights, tune_hybrid


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


def test_the_middle_of_a_flat_top_is_taken_not_its_edge():
    # a curve peaking at 0.6-0.65 whose tied set reaches down to 0.5: the middle, 0.6, not 0.5
    curve = {0.4: 0.880, 0.45: 0.885, 0.5: 0.8905, 0.55: 0.8910, 0.6: 0.8919, 0.65: 0.8906, 0.7: 0.8904,
             0.75: 0.880, 0.8: 0.870}
    scores = {(0.0, w): v for w, v in curve.items()}
    scores.update({(0.05, round(w - 0.05, 2)): v - TIE / 2 for w, v in curve.items()})  # same dense weight, w_dense > 0
    a, b = pick_weights(scores)
    assert (a, b) == (0.0, 0.6)
    # the tied range 0.55-0.6: its middle is between them, the higher score decides
    a, b = pick_weights({(0.0, 0.5): 0.80, (0.0, 0.55): 0.891, (0.0, 0.6): 0.892, (0.0, 0.65): 0.85})
    assert (a, b) == (0.0, 0.6)
