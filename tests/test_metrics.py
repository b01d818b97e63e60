import numpy as np
import pytest

from common.metrics import evaluate, mrr_at_k, recall_at_k


def test_hand_computed_cases():
    # q1: relevant at rank 2 -> RR 1/2; q2: relevant at rank 1 -> 1; q3: not in top 10 -> 0
    ranked = np.array([[5, 7, 9] + list(range(100, 107)) + [8],
                       [3, 1, 2] + list(range(200, 208)),
                       list(range(300, 310)) + [4]])
    rel = [{7}, {3}, {4}]
    assert mrr_at_k(ranked, rel, 10) == pytest.approx((0.5 + 1 + 0) / 3)
    assert recall_at_k(ranked, rel, 10) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, rel, 11) == pytest.approx(1.0)


def test_ranx_agrees_with_hand_computation():
    run = {"q1": {"a": 0.9, "b": 0.8, "c": 0.7}, "q2": {"x": 0.5, "y": 0.4}, "q3": {"z": 1.0}}
    qrels = {"q1": {"b": 1}, "q2": {"x": 1, "y": 1}, "q3": {"nope": 1}}
    m = evaluate(run, qrels)
    assert m["mrr@10"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert m["recall@10"] == pytest.approx((1 + 1 + 0) / 3)
    # nDCG@10 of q1: relevant at rank 2 -> 1/log2(3); ideal 1. q2: both at 1,2 -> 1.
    assert m["ndcg@10"] == pytest.approx((1 / np.log2(3) + 1 + 0) / 3)


def test_query_missing_from_run_counts_as_zero():
    m = evaluate({"q1": {"a": 1.0}}, {"q1": {"a": 1}, "q2": {"b": 1}})
    assert m["mrr@10"] == pytest.approx(0.5)
