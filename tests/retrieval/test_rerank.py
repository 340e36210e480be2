"""Label-vote re-ranking: each candidate gains in proportion to its label's share of the neighbours' vote."""

import numpy as np
import pytest

from fashionrec.retrieval.rerank import LabelVote, label_codes, rerank, vote_order


def test_a_heavy_vote_moves_the_voted_label_first_keeping_order() -> None:
    labels = np.array([[0, 1, 1, 0, 2, 1], [2, 2, 0, 0, 0, 2]])
    scores = np.array([[0.9, 0.85, 0.8, 0.5, 0.45, 0.4], [0.9, 0.9, 0.3, 0.3, 0.3, 0.2]])
    order = vote_order(labels, scores, voters=4, weight=10.0)
    # Row 0: label 1 gets 0.85 + 0.8 against label 0's 0.9 + 0.5, so the nearest item (label 0) drops behind
    # every label-1 candidate, including the one beyond the voters. Row 1: label 2 (1.8) beats label 0 (0.6).
    assert order[0].tolist() == [1, 2, 5, 0, 3, 4]
    assert order[1].tolist() == [0, 1, 5, 2, 3, 4]
    # With one voter the nearest candidate's label wins.
    assert vote_order(np.array([[3, 1, 3, 1]]), np.array([[0.9, 0.8, 0.7, 0.6]]), 1, 10.0)[0].tolist() == [0, 2, 1, 3]


def test_a_light_vote_keeps_a_much_closer_product_of_another_type_on_top() -> None:
    labels, scores = np.array([[3, 1, 1, 1]]), np.array([[0.95, 0.6, 0.59, 0.58]])
    assert vote_order(labels, scores, voters=4, weight=0.05)[0].tolist() == [0, 1, 2, 3]  # bonuses 0.0175 / 0.0325
    assert vote_order(labels, scores, voters=4, weight=2.0)[0].tolist() == [1, 2, 3, 0]  # 0.95 + 0.70 < 0.6 + 1.30


def test_unknown_labels_do_not_vote_and_go_last() -> None:
    order = vote_order(np.array([[-1, 4, -1, 4, 5]]), np.array([[0.99, 0.5, 0.98, 0.4, 0.3]]), voters=3, weight=10.0)
    assert order[0].tolist() == [1, 3, 0, 2, 4]


def test_empty_and_bad_settings() -> None:
    assert vote_order(np.zeros((0, 5), dtype=np.int64), np.zeros((0, 5)), 3).shape == (0, 5)
    with pytest.raises(ValueError, match="voters"):
        LabelVote(voters=60, depth=50)
    with pytest.raises(ValueError, match="weight"):
        LabelVote(weight=-1)


def test_rerank_orders_one_querys_candidates_by_their_labels_codes() -> None:
    # The two shirts (code 1) vote Shirts, so the nearer heel (code 0) drops behind them; an unknown item (-1) last.
    order, relevance = rerank(np.array([1, 0, 1, -1]), np.array([0.9, 0.85, 0.8, 0.79]), LabelVote(voters=3, depth=4, weight=10))
    assert order.tolist() == [0, 2, 1, 3]
    assert relevance.tolist() == sorted(relevance.tolist(), reverse=True) and relevance[-1] == 0.79  # unknown: no bonus
    assert rerank(np.zeros(0, dtype=np.int64), np.zeros(0), LabelVote())[0].tolist() == []
    assert label_codes(["b", "a", "b"])[0].tolist() == [1, 0, 1]
