from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def evaluate_model(
    valid_catalog: Input[Dataset],
    model: Input[Model],
    embeddings: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[HTML],
    holdout_fraction: float = 0.2,
    request_log_uri: str = "",
    event_log_uri: str = "",
) -> None:
    """Retrieval quality on the held-out product groups (near-duplicate photos and colour variants stay on one side
    and out of their own query's answers), ranked as the transformer ranks (label-vote re-ranking): precision, recall,
    hit rate, nDCG and mAP at 1/5/10, masterCategory precision@5, the worst classes' precision@5, catalogue coverage
    and popularity Gini, nearest-neighbour accuracy; the confusion matrix for the KFP UI; an HTML report with the
    worst classes and example queries. Scores the embed step's vectors of this model: the catalogue is encoded once.
    With both logs (the transformers' request log and event log), the offline replay too: the share of shoppers'
    clicks in logged item queries that this model's top 5 recovers (sessions kept out of co-click training)."""
    from pathlib import Path

    from fashionrec.config import REPORT_FILE
    from fashionrec.engagement.replay import logged_sessions
    from fashionrec.training.card import ModelCard
    from fashionrec.training.evaluate import evaluate_embeddings, write_evaluation

    card = ModelCard.load(Path(model.path))
    sessions = logged_sessions(request_log_uri, event_log_uri)[1] if request_log_uri and event_log_uri else None
    result = evaluate_embeddings(
        Path(valid_catalog.path), Path(embeddings.path), card.model_version, holdout_fraction=holdout_fraction,
        sessions=sessions,
    )  # fmt: skip
    write_evaluation(result, card, Path(evaluation.path))
    Path(report.path).write_text((Path(evaluation.path) / REPORT_FILE).read_text())
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    confusion.log_confusion_matrix(result.classes, result.confusion)
    evaluation.metadata.update({"model_version": card.model_version, "precision_at_5": result.metrics.get("precision_at_5", 0.0)})
