"""Run parameters are declared once (fashionrec.params) and the CLI, the train component and the pipeline follow."""

import json
from dataclasses import MISSING
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fashionrec.cli import app
from fashionrec.local.pipeline_runner import compile_all
from fashionrec.params import (
    Backbone,
    IndexKind,
    PipelineSettings,
    TrainConfig,
    from_values,
    plain_values,
    run_parameters,
)

runner = CliRunner()


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


def test_train_and_pipeline_run_offer_every_parameter_with_its_help() -> None:
    train_help = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "300"}).output
    run_help = runner.invoke(app, ["pipeline", "run", "--help"], env={"COLUMNS": "300"}).output
    for p in run_parameters(TrainConfig):
        assert option(p.name) in train_help and option(p.name) in run_help and p.help in train_help
    for p in run_parameters(PipelineSettings, cli=True):
        assert option(p.name) in run_help and p.help.split(" (")[0] in run_help
    assert "resnet18|resnet18_fine|resnet50|efficientnet_b0|mobilenet_v3_large" in train_help  # enum choices are listed


def test_the_cli_refuses_a_value_outside_the_choices(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--valid", "v.parquet", "--out", str(tmp_path), "--backbone", "vgg16"])
    assert result.exit_code == 2 and "vgg16" in result.output
    result = runner.invoke(app, ["index", "--embeddings", "e.parquet", "--out", str(tmp_path), "--kind", "lsh"])
    assert result.exit_code == 2 and "lsh" in result.output


@pytest.mark.parametrize("gpu", [True, False])
def test_the_compiled_pipeline_has_exactly_the_declared_parameters_defaults_and_descriptions(tmp_path: Path, gpu: bool) -> None:
    spec = next(yaml.safe_load_all(compile_all(tmp_path, gpu=gpu)[0].read_text()))
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    declared = run_parameters(TrainConfig, pipeline=True) + run_parameters(PipelineSettings, pipeline=True)
    assert set(inputs) == {"catalog_uri", "catalog_pvc"} | {p.name for p in declared}
    for p in declared:
        cluster = gpu and p.gpu_cluster_default is not MISSING
        assert inputs[p.name]["defaultValue"] == (p.gpu_cluster_default if cluster else p.plain_default), p.name
        assert inputs[p.name]["description"].startswith(p.help), p.name
    # A GPU cluster's pipeline starts from ImageNet weights and trains longer; a CPU one keeps the local defaults.
    assert inputs["weights"]["defaultValue"] == ("imagenet" if gpu else "none")
    assert inputs["epochs"]["defaultValue"] == (30 if gpu else TrainConfig().epochs)
    assert "One of: auto, flat, hnsw, ivf" in inputs["index_kind"]["description"]
    assert {"device", "resume", "channels_last"}.isdisjoint(inputs)  # CLI-only: a cluster step picks these itself
    train_inputs = spec["components"]["comp-train-encoder"]["inputDefinitions"]["parameters"]
    # The train step takes the pipeline's training parameters as one dict, the logs co-clicked pairs come from, and
    # the registry weights=production warm-starts from.
    assert set(train_inputs) == {"config", "request_log_uri", "event_log_uri", "registry_uri"}


def test_values_from_kfp_or_json_are_checked_and_converted() -> None:
    config = from_values(TrainConfig, {"backbone": "resnet50", "epochs": 3})
    assert config.backbone is Backbone.RESNET50 and config.epochs == 3 and config.seed == TrainConfig().seed
    settings = from_values(PipelineSettings, {"validation_settings": '{"min_sharpness": 20}', "index_kind": "hnsw"})
    assert settings.validation_settings == {"min_sharpness": 20} and settings.index_kind is IndexKind.HNSW
    with pytest.raises(ValueError, match=r"unknown TrainConfig parameter\(s\) \['epoch'\]"):
        from_values(TrainConfig, {"epoch": 3})
    with pytest.raises(ValueError, match="index_kind must be one of auto, flat, hnsw, ivf"):
        from_values(PipelineSettings, {"index_kind": "lsh"})
    assert from_values(TrainConfig, {"epochs": 2, "min_improvement": 0.1}, strict=False).epochs == 2
    # KFP hands a dict parameter to a component as a protobuf Struct, where every number is a double
    # and a pipeline channel inside a dict parameter as text
    from_kfp = from_values(TrainConfig, {"epochs": 3.0, "seed": "0.0", "learning_rate": 1, "compile": "false"})
    assert (from_kfp.epochs, from_kfp.seed, from_kfp.learning_rate, from_kfp.compile) == (3, 0, 1.0, False)
    assert type(from_kfp.epochs) is int and type(from_kfp.seed) is int
    for bad in ({"epochs": 2.5}, {"epochs": "many"}, {"compile": "maybe"}, {"weights": 3}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be a"):
            from_values(TrainConfig, bad)


def test_plain_values_are_json_and_round_trip() -> None:
    config = TrainConfig(backbone=Backbone.EFFICIENTNET_B0, epochs=5)
    values = plain_values(config)
    assert json.loads(json.dumps(values)) == values and values["backbone"] == "efficientnet_b0"
    assert from_values(TrainConfig, values) == config
    assert "device" not in plain_values(config, pipeline=True)
