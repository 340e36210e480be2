"""Every KFP component, called through component.python_func with real artifacts in tmp_path, chained like the
pipeline chains them."""

import json
from pathlib import Path

import pandas as pd
import pytest
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from components.build_index import build_index
from components.embed_catalog import embed_catalog
from components.evaluate_model import evaluate_model
from components.gate_model import gate_model
from components.materialize_features import materialize_features
from components.package_model import package_model
from components.train_encoder import train_encoder
from components.validate_catalog import validate_catalog
from fashionrec.config import MODEL_NAME, PROJECT_IMAGE


def artifact(kind, tmp_path: Path, name: str):  # type: ignore[no-untyped-def]
    return kind(name=name, uri=str(tmp_path / name), metadata={})


def test_components_run_the_whole_chain(tiny_catalog: Path, tmp_path: Path) -> None:
    valid, quarantine, report, docs, manifest, validation_metrics = (
        artifact(Dataset, tmp_path, "valid"),
        artifact(Dataset, tmp_path, "quarantine"),
        artifact(HTML, tmp_path, "report"),
        artifact(HTML, tmp_path, "docs"),
        artifact(Artifact, tmp_path, "manifest"),
        artifact(Metrics, tmp_path, "vm"),
    )
    validate_catalog.python_func(
        catalog_dir=str(tiny_catalog),
        valid_catalog=valid,
        quarantine=quarantine,
        report=report,
        data_docs=docs,
        dataset_manifest=manifest,
        metrics=validation_metrics,
        validation_settings={"min_sharpness": 5.0},
    )
    assert validation_metrics.metadata["rows_valid"] == 60 and valid.metadata["rows"] == 60
    assert pd.read_csv(quarantine.path).empty and "<html" in Path(report.path).read_text()
    assert "Great Expectations" in Path(docs.path).read_text()
    digest = manifest.metadata["dataset_digest"]
    assert json.loads(Path(manifest.path).read_text())["validation_settings"]["min_sharpness"] == 5.0

    model, train_metrics = artifact(Model, tmp_path, "model"), artifact(Metrics, tmp_path, "tm")
    train_encoder.python_func(valid_catalog=valid, model=model, metrics=train_metrics, epochs=1, batch_size=16)
    assert len(model.metadata["model_version"]) == 12
    assert (
        model.metadata["dataset_digest"] == digest
    )  # provenance: the model names the exact data    assert {"train_loss", "holdout_accuracy"} <= set(train_metrics.metadata)

    embeddings = artifact(Dataset, tmp_path, "embeddings")
    embed_catalog.python_func(valid_catalog=valid, model=model, embeddings=embeddings)
    assert embeddings.metadata == {"rows": 60, "model_version": model.metadata["model_version"]}

    evaluation, eval_metrics, confusion, eval_report = (
        artifact(Artifact, tmp_path, "evaluation"),
        artifact(Metrics, tmp_path, "em"),
        artifact(ClassificationMetrics, tmp_path, "cm"),
        artifact(HTML, tmp_path, "eval_report"),
    )
    evaluate_model.python_func(
        valid_catalog=valid,
        model=model,
        embeddings=embeddings,
        evaluation=evaluation,
        metrics=eval_metrics,
        confusion=confusion,
        report=eval_report,
    )
    assert 0 <= eval_metrics.metadata["precision_at_5"] <= 1
    assert len(confusion.metadata["confusionMatrix"]["rows"]) == 6
    assert "data:image/jpeg;base64," in Path(eval_report.path).read_text()
    decision = artifact(Markdown, tmp_path, "decision")
    outcome = gate_model.python_func(valid_catalog=valid, candidate_evaluation=evaluation, decision=decision)
    assert outcome.promote is True and "PROMOTE" in Path(decision.path).read_text()  # no production model yet
    again = gate_model.python_func(
        valid_catalog=valid, candidate_evaluation=evaluation, decision=decision, production_model_dir=model.path
    )
    assert again.promote is False and "REJECT" in Path(decision.path).read_text()  # the same model is no improvement

    repo, feature_metrics = artifact(Artifact, tmp_path, "repo"), artifact(Metrics, tmp_path, "fm")
    materialize_features.python_func(embeddings=embeddings, feature_repo=repo, metrics=feature_metrics)
    assert feature_metrics.metadata["rows_materialized"] == 60
    assert (Path(repo.path) / "data" / "online_store.db").is_file()

    index = artifact(Artifact, tmp_path, "index")
    build_index.python_func(embeddings=embeddings, index=index)
    assert index.metadata["count"] == 60 and index.metadata["model_version"] == model.metadata["model_version"]
    assert index.metadata["dataset_digest"] == digest and index.metadata["index_kind"] == "flat"  # 60 items: exact
    hnsw = artifact(Artifact, tmp_path, "hnsw")
    build_index.python_func(embeddings=embeddings, index=hnsw, index_kind="hnsw")
    assert hnsw.metadata["index_kind"] == "hnsw" and hnsw.metadata["index_params"]["ef_search"] > 0

    store = artifact(Model, tmp_path, "store")
    package_model.python_func(model=model, model_store=store)
    assert (Path(store.path) / "model-store" / f"{MODEL_NAME}.mar").is_file()
    assert json.loads(json.dumps(store.metadata))["model_version"] == model.metadata["model_version"]


@pytest.mark.parametrize(
    "component",
    [
        validate_catalog,
        train_encoder,
        evaluate_model,
        gate_model,
        embed_catalog,
        materialize_features,
        build_index,
        package_model,
    ],
)
def test_components_use_the_project_image_and_document_themselves(component) -> None:  # type: ignore[no-untyped-def]
    container = component.component_spec.implementation.container
    assert container.image == PROJECT_IMAGE
    assert component.python_func.__doc__ and len(component.python_func.__doc__) > 40
