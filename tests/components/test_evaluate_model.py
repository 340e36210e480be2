import json
from pathlib import Path

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Metrics, Model
from kfp_artifacts import artifact

from components.evaluate_model import evaluate_model
from fashionrec.config import METRICS_FILE
from fashionrec.local.stages import StageOutputs
from fashionrec.training.card import ModelCard


def test_evaluate_model_scores_the_embed_steps_vectors(stages: StageOutputs, tmp_path: Path) -> None:
    evaluation, metrics = artifact(Artifact, tmp_path, "evaluation"), artifact(Metrics, tmp_path, "metrics")
    confusion, report = artifact(ClassificationMetrics, tmp_path, "confusion"), artifact(HTML, tmp_path, "report")
    evaluate_model.python_func(
        valid_catalog=artifact(Dataset, stages.valid.parent, stages.valid.name),
        model=artifact(Model, stages.model_dir.parent, stages.model_dir.name),
        embeddings=artifact(Dataset, stages.embeddings.parent, stages.embeddings.name),
        evaluation=evaluation,
        metrics=metrics,
        confusion=confusion,
        report=report,
    )
    written = json.loads((Path(evaluation.path) / METRICS_FILE).read_text())
    assert written["model_version"] == ModelCard.load(stages.model_dir).model_version
    assert 0 <= metrics.metadata["precision_at_5"] <= 1 and metrics.metadata["precision_at_5"] == written["precision_at_5"]
    assert len(confusion.metadata["confusionMatrix"]["rows"]) == 6
    assert "data:image/jpeg;base64," in Path(report.path).read_text()
