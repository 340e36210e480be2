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


def test_with_shoppers_logs_it_replays_their_clicks_and_the_gate_reports_it(stages: StageOutputs, tmp_path: Path) -> None:
    """The transformer's logs of item queries and clicks (written by its own code): the replay metric is the share of
    clicks the model's top 5 recovers, on the sessions kept out of co-click training."""
    import numpy as np

    from fashionrec.drift.live import LiveMonitor
    from fashionrec.drift.profile import ReferenceProfile
    from fashionrec.engagement.events import FeedbackEvent
    from fashionrec.engagement.replay import for_replay
    from fashionrec.retrieval.embeddings import read_embeddings
    from fashionrec.storage import write_log_lines
    from fashionrec.training.gate import decide

    profile = ReferenceProfile.of_index(stages.index_dir)
    assert profile is not None
    monitor = LiveMonitor(profile, request_log=str(tmp_path / "requests"))
    table, vectors = read_embeddings(stages.embeddings)
    ids = table["item_id"].astype(int).to_numpy()
    events, replayed, recovered = [], 0, 0.0
    for n, row in enumerate(range(len(ids))):
        request, query = f"req-{n}", int(ids[row])
        order = [int(ids[i]) for i in np.argsort(-(vectors @ vectors[row])) if i != row]
        clicked = [order[0], order[30]]  # one the model ranks first, one it ranks far down
        monitor.record_item(request, query, np.asarray(order[:10]))
        events += [FeedbackEvent("click", f"{request}-{i}", request, profile.model_version, item, 1, "session1234", 0.0).log_line()
                   for i, item in enumerate(clicked)]  # fmt: skip
        if for_replay(request):
            replayed, recovered = replayed + 1, recovered + 0.5
    monitor.flush()
    write_log_lines(str(tmp_path / "events"), events)
    evaluation, metrics = artifact(Artifact, tmp_path, "evaluation"), artifact(Metrics, tmp_path, "metrics")
    evaluate_model.python_func(
        valid_catalog=artifact(Dataset, stages.valid.parent, stages.valid.name),
        model=artifact(Model, stages.model_dir.parent, stages.model_dir.name),
        embeddings=artifact(Dataset, stages.embeddings.parent, stages.embeddings.name),
        evaluation=evaluation, metrics=metrics, confusion=artifact(ClassificationMetrics, tmp_path, "confusion"),
        report=artifact(HTML, tmp_path, "report"), request_log_uri=str(tmp_path / "requests"),
        event_log_uri=str(tmp_path / "events"),
    )  # fmt: skip
    assert 0 < replayed < len(ids) and metrics.metadata["replay_sessions"] == replayed
    assert metrics.metadata["replay_recall_at_5"] == recovered / replayed == 0.5
    written = json.loads((Path(evaluation.path) / METRICS_FILE).read_text())
    gate = decide(written, None)
    assert "| replay_recall_at_5 (reported) | 0.5000 | — |" in gate.markdown
