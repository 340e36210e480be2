import json
from pathlib import Path

from kfp.dsl import Artifact, Dataset, Markdown, Model
from kfp_artifacts import artifact

from components.deploy_model import deploy_model
from fashionrec.data.validation.report import output_paths, write_outputs
from fashionrec.local.stages import StageOutputs


def test_deploy_model_publishes_a_release_once_and_reports(stages: StageOutputs, tiny_catalog: Path, tmp_path: Path) -> None:
    from fashionrec.data.validation.checks import ValidationSettings
    from fashionrec.data.validation.quarantine import validate_catalog

    valid_dir = tmp_path / "valid"
    write_outputs(validate_catalog(tiny_catalog, ValidationSettings()), tiny_catalog, output_paths(valid_dir))
    inputs = {
        "model_store": artifact(Model, stages.model_store.parent, stages.model_store.name),
        "index": artifact(Artifact, stages.index_dir.parent, stages.index_dir.name),
        "feature_repo": artifact(Artifact, stages.feature_repo.parent, stages.feature_repo.name),
        "valid_catalog": artifact(Dataset, valid_dir, "valid.parquet"),
        "gate_passed": True,
        "deploy_target": "none",  # publish only: no servers in a unit test
        "releases_uri": str(tmp_path / "releases"),
    }
    report = artifact(Markdown, tmp_path, "report.md")
    outputs = deploy_model.python_func(report=report, **inputs)
    version = stages.deployment.model_version
    assert outputs.promoted is True and report.metadata["model_version"] == version
    release = tmp_path / "releases" / version
    assert json.loads((release / "release.json").read_text())["model_version"] == version
    assert (release / "model_store" / "model-store" / "fashionrec.mar").is_file()
    assert (release / "serving" / "index" / "index.json").is_file() and (release / "serving" / "feature_repo").is_dir()
    assert f"`{version}`" in Path(report.path).read_text()
    written = (release / "release.json").stat().st_mtime_ns
    deploy_model.python_func(report=artifact(Markdown, tmp_path, "again.md"), **inputs)  # a retried step
    assert (release / "release.json").stat().st_mtime_ns == written  # never overwritten
    rejected = artifact(Markdown, tmp_path, "rejected.md")
    assert deploy_model.python_func(report=rejected, **{**inputs, "gate_passed": False}).promoted is False
    assert "gate rejected" in Path(rejected.path).read_text() and len(list((tmp_path / "releases").iterdir())) == 1
