import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fashionrec.local.stages import StageOutputs
from fashionrec.params import SplitKind
from fashionrec.retrieval.rerank import LabelVote
from fashionrec.training.card import ModelCard
from fashionrec.training.evaluate import evaluate, evaluate_vectors, gini, retrieval_metrics, write_evaluation
from fashionrec.training.gate import GatePolicy, decide


def test_retrieval_metrics_on_a_hand_checked_case() -> None:
    # catalogue rows 0..5 with labels a a a b b c; two queries (rows 0 and 3), neighbours best first.
    labels = np.array(["a", "a", "a", "b", "b", "c"])
    neighbours = np.array([[1, 3, 2], [5, 4, 1]])
    m = retrieval_metrics(labels, neighbours, np.array([0, 3]), k_values=(1, 3))
    assert m["precision_at_1"] == pytest.approx(0.5)  # query a: hit; query b: miss
    assert m["precision_at_3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert m["hit_rate_at_1"] == pytest.approx(0.5) and m["hit_rate_at_3"] == pytest.approx(1.0)
    assert m["recall_at_3"] == pytest.approx((2 / 2 + 1 / 1) / 2)  # a has 2 other a's, b has 1 other b
    assert m["ndcg_at_3"] == pytest.approx(((1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3)) + (1 / np.log2(3)) / 1) / 2)
    assert m["map_at_3"] == pytest.approx(((1 + 2 / 3) / 2 + (1 / 2) / 1) / 2)
    assert m["catalogue_coverage_at_10"] == pytest.approx(5 / 6)


def twin_catalogue() -> tuple[pd.DataFrame, np.ndarray]:
    """Two colour variants of one kurta (one family) beside other products: the red kurta's nearest vector is its
    blue twin, then a shirt, then two kurtas of other families."""
    rows = [
        (1, "Alpha Women Kurta", "Red", "Kurtas", "Apparel"),
        (2, "Alpha Women Kurta", "Blue", "Kurtas", "Apparel"),
        (3, "Beta Men Shirt", "White", "Shirts", "Apparel"),
        (4, "Gamma Women Kurta", "Green", "Kurtas", "Apparel"),
        (5, "Delta Men Watch", "Black", "Watches", "Accessories"),
        (6, "Epsilon Men Shirt", "Grey", "Shirts", "Apparel"),
        (7, "Zeta Women Kurta", "Pink", "Kurtas", "Apparel"),
    ]
    table = pd.DataFrame(rows, columns=["id", "productDisplayName", "baseColour", "articleType", "masterCategory"])
    table["image_phash"] = None
    vectors = np.array(
        [[1, 0, 0], [0.99, 0.1, 0], [0.9, 0.4, 0], [0.8, 0, 0.6], [0, 0, 1], [0, 1, 0], [0.85, 0, 0.5]], dtype=np.float32
    )
    return table, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_the_honest_protocol_keeps_a_querys_own_group_out_of_its_answers() -> None:
    table, vectors = twin_catalogue()
    query = np.array([0])  # the red kurta
    leaky = evaluate_vectors(table, vectors, split=SplitKind.ID, query_rows=query, examples=0).metrics
    honest = evaluate_vectors(table, vectors, split=SplitKind.GROUP, query_rows=query, examples=0)
    assert leaky["precision_at_1"] == 1.0  # its blue twin answers first
    assert honest.metrics["precision_at_1"] == 0.0  # without the twin, the shirt is nearest
    assert honest.metrics["recall_at_5"] == 1.0  # both kurtas outside its group are among the 5 candidates left
    assert honest.metrics["masterCategory_precision_at_5"] == pytest.approx(4 / 5)  # the watch is the wrong kind
    assert [(c.label, c.queries, c.precision_at_5) for c in honest.per_class] == [("Kurtas", 1, pytest.approx(2 / 5))]
    # The 3 nearest vote: two kurtas outweigh the shirt; with weight 1 their bonus lifts them above it.
    vote = LabelVote(voters=3, depth=5, weight=1.0)
    reranked = evaluate_vectors(table, vectors, query_rows=query, examples=0, rerank=vote)
    assert reranked.metrics["precision_at_1"] == 1.0 and reranked.metrics["precision_at_5"] == pytest.approx(2 / 5)


def test_a_query_can_search_with_another_vector_than_its_catalogue_one() -> None:
    """Expanded queries and catalogues augmented at index time: the query's vector is not the catalogue's."""
    table, vectors = twin_catalogue()
    query = np.array([0])  # the red kurta
    same = evaluate_vectors(table, vectors, query_rows=query, examples=0, query_vectors=vectors)
    assert same.metrics == evaluate_vectors(table, vectors, query_rows=query, examples=0).metrics
    searching = vectors.copy()
    searching[0] = vectors[int(np.flatnonzero(table["articleType"].to_numpy() == "Kurtas")[-1])]  # a kurta elsewhere
    moved = evaluate_vectors(table, vectors, query_rows=query, examples=0, query_vectors=searching)
    assert moved.metrics["precision_at_1"] == 1.0 > same.metrics["precision_at_1"]


def test_gini_bounds() -> None:
    assert gini(np.array([3.0, 3.0, 3.0])) == pytest.approx(0.0)
    assert gini(np.array([0.0, 0.0, 9.0])) == pytest.approx(2 / 3)
    assert gini(np.zeros(4)) == 0.0


def test_evaluation_of_the_trained_model(stages: StageOutputs, tmp_path: Path) -> None:
    result = evaluate(stages.valid, stages.model_dir, holdout_fraction=0.2)
    m = result.metrics
    assert m["queries"] >= 5
    for k in (1, 5, 10):
        assert 0 <= m[f"precision_at_{k}"] <= 1 and 0 <= m[f"ndcg_at_{k}"] <= 1
    assert m["hit_rate_at_10"] >= m["hit_rate_at_5"] >= m["hit_rate_at_1"]
    assert m["precision_at_5"] > 1 / 6  # better than a random catalogue item (6 balanced classes)
    assert sum(map(sum, result.confusion)) == m["queries"] and len(result.confusion) == len(result.classes) == 6
    card = ModelCard.load(stages.model_dir)
    write_evaluation(result, card, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["model_version"] == card.model_version and saved["precision_at_5"] == m["precision_at_5"]
    assert (tmp_path / "report.html").read_text().count("data:image/jpeg;base64,") == 6 * len(result.examples)
    # The interval of the draw: around the estimate, from the per-query scores written beside it.
    assert m["precision_at_5_ci_low"] <= m["precision_at_5"] <= m["precision_at_5_ci_high"]
    assert m["precision_at_5_ci_high"] - m["precision_at_5_ci_low"] > 0
    per_query = pd.read_json(tmp_path / "per_query.json", orient="records")
    assert len(per_query) == m["queries"] and per_query["precision_at_5"].mean() == pytest.approx(m["precision_at_5"])


def test_scoring_the_embed_stages_vectors_equals_re_embedding(stages: StageOutputs) -> None:
    from fashionrec.training.evaluate import evaluate_embeddings

    card = ModelCard.load(stages.model_dir)
    from_model = evaluate(stages.valid, stages.model_dir, holdout_fraction=0.2)
    from_embeddings = evaluate_embeddings(stages.valid, stages.embeddings, card.model_version, holdout_fraction=0.2)
    assert from_embeddings.metrics == pytest.approx(from_model.metrics, abs=1e-6)
    assert from_embeddings.confusion == from_model.confusion
    with pytest.raises(ValueError, match="not another-model"):
        evaluate_embeddings(stages.valid, stages.embeddings, "another-model")


def test_gate_promotes_the_first_model_and_then_only_improvements() -> None:
    base = {"model_version": "a", "precision_at_5": 0.60, "catalogue_coverage_at_10": 0.50, "ndcg_at_10": 0.70}
    first = decide(base, None)
    assert first.promote and "no production model" in first.markdown
    better = {**base, "model_version": "b", "precision_at_5": 0.65}
    assert decide(better, base).promote
    assert not decide(base, base).promote  # a tie is no reason to deploy
    assert not decide(better, base, GatePolicy(min_improvement=0.1)).promote
    worse = {**base, "model_version": "c", "precision_at_5": 0.58}
    assert not decide(worse, base).promote
    assert decide(worse, base, GatePolicy(min_improvement=-0.05)).promote  # a drop accepted explicitly
    assert not decide(worse, base, GatePolicy(min_improvement=-0.01)).promote
    narrower = {**better, "catalogue_coverage_at_10": 0.40}
    verdict = decide(narrower, base)
    assert not verdict.promote and "guard catalogue_coverage_at_10 drops by 0.1000" in verdict.markdown
    assert verdict.markdown.startswith("# Model gate: REJECT")
    with pytest.raises(KeyError, match="ndcg_at_10"):
        decide({"precision_at_5": 1.0, "catalogue_coverage_at_10": 1.0}, None)


def test_no_model_below_the_floor_is_promoted_the_first_one_included() -> None:
    """Fail closed: with no production model (a registry that is empty or not configured) the gate used to promote
    any model at all."""
    weak = {"model_version": "w", "precision_at_5": 0.20, "catalogue_coverage_at_10": 0.50, "ndcg_at_10": 0.30}
    first = decide(weak, None, GatePolicy(floor=0.5))
    assert not first.promote and "Decided by the floor." in first.markdown
    assert "precision_at_5 0.2000 is below the floor 0.5000" in first.markdown
    production = {**weak, "model_version": "p", "precision_at_5": 0.10}
    better_but_weak = decide(weak, production, GatePolicy(floor=0.5))
    assert not better_but_weak.promote and "Decided by the floor." in better_but_weak.markdown
    strong = {**weak, "model_version": "s", "precision_at_5": 0.80}
    assert "Decided by every rule passing" in decide(strong, production, GatePolicy(floor=0.5)).markdown
    narrower = {**strong, "catalogue_coverage_at_10": 0.10}
    assert "Decided by the guard on catalogue_coverage_at_10." in decide(narrower, production, GatePolicy(floor=0.5)).markdown
    assert decide(weak, None, GatePolicy(floor=0.0)).promote  # a run may lower it explicitly


def test_the_vote_can_count_merged_classes_while_relevance_stays_the_article_type() -> None:
    """Shirts and kurtas merged as synonyms for the vote: the shirt shares the kurtas' bonus and keeps its lead by
    score, so the answer that lifted a kurta to the top without the merge is a shirt again and counts as wrong."""
    table, vectors = twin_catalogue()
    query, vote = np.array([0]), LabelVote(voters=3, depth=5, weight=1.0)
    merged = table["articleType"].replace({"Shirts": "Kurtas"}).to_numpy()
    pooled = evaluate_vectors(table, vectors, query_rows=query, examples=0, rerank=vote, vote_labels=merged).metrics
    assert pooled["precision_at_1"] == 0.0
    assert pooled == evaluate_vectors(table, vectors, query_rows=query, examples=0).metrics  # as if not re-ranked
