"""The training pipeline: validate -> train -> embed -> (features, index, package).

Compile: `python -m pipelines.training_pipeline OUT.yaml` from the repo root (CI compiles every pipeline module); run locally with
`fashionrec pipeline run --catalog DIR` (kfp.local), or upload the YAML in the KFP UI.
"""

import sys
from typing import Any, NamedTuple

from kfp import compiler, dsl
from kfp.dsl import Artifact, Model
from kfp.dsl.graph_component import GraphComponent

from components.build_index import build_index
from components.embed_catalog import embed_catalog
from components.evaluate_model import evaluate_model
from components.gate_model import gate_model
from components.materialize_features import materialize_features
from components.package_model import package_model
from components.register_model import register_model
from components.train_encoder import train_encoder
from components.validate_catalog import validate_catalog
from fashionrec.params import PipelineSettings, TrainConfig, kfp_signature, run_parameters

PIPELINE_NAME = "fashionrec-training"


class TrainingOutputs(NamedTuple):
    model_store: Model
    index: Artifact
    feature_repo: Artifact
    promoted: bool


def build_training_pipeline(gpu: bool = True) -> GraphComponent:
    """The pipeline; ``gpu`` makes the train step request one NVIDIA GPU (the code falls back to the CPU)."""

    @dsl.pipeline(name=PIPELINE_NAME, description="Validate a fashion catalogue, train the encoder, index and serve-package it")
    @kfp_signature(TrainConfig, PipelineSettings)
    def training_pipeline(catalog_dir: str, **parameters: Any) -> TrainingOutputs:
        """Validate a fashion catalogue, train and evaluate the encoder, gate it against production, and build what
        serving needs (Feast online store, FAISS index, TorchServe model store); register it in the model registry.

        Args:
            catalog_dir: Kaggle-layout catalogue folder (styles.csv + images/) as the pipeline's pods see it.
        """
        train = {p.name: parameters[p.name] for p in run_parameters(TrainConfig, pipeline=True)}
        holdout_fraction = parameters["holdout_fraction"]
        registry_uri = parameters["registry_uri"]
        validated = validate_catalog(catalog_dir=catalog_dir, validation_settings=parameters["validation_settings"])
        validated.set_display_name("validate catalogue (Great Expectations)")
        validated.set_caching_options(False)  # the catalogue folder can change under the same path

        trained = train_encoder(valid_catalog=validated.outputs["valid_catalog"], config=train)
        trained.set_display_name("train encoder")
        trained.set_cpu_request("2").set_memory_request("8G").set_memory_limit("16G")
        # Retries resume from the checkpoint the step writes after every epoch (pre-emptible GPU nodes).
        trained.set_retry(num_retries=2, backoff_duration="60s")
        if gpu:
            trained.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)

        embedded = embed_catalog(valid_catalog=validated.outputs["valid_catalog"], model=trained.outputs["model"])
        embedded.set_display_name("embed catalogue")

        evaluated = evaluate_model(
            valid_catalog=validated.outputs["valid_catalog"],
            model=trained.outputs["model"],
            embeddings=embedded.outputs["embeddings"],
            holdout_fraction=holdout_fraction,
        )
        evaluated.set_display_name("evaluate retrieval")

        gated = gate_model(
            valid_catalog=validated.outputs["valid_catalog"],
            candidate_evaluation=evaluated.outputs["evaluation"],
            production_model_dir=parameters["production_model_dir"],
            registry_uri=registry_uri,
            holdout_fraction=holdout_fraction,
            min_improvement=parameters["min_improvement"],
        )
        gated.set_display_name("gate against production")
        gated.set_caching_options(False)  # production changes between runs

        features = materialize_features(embeddings=embedded.outputs["embeddings"], promote=gated.outputs["promote"])
        features.set_display_name("feast apply + materialize")
        features.set_caching_options(False)  # it writes the online store, a side effect caching would skip

        index = build_index(embeddings=embedded.outputs["embeddings"], index_kind=parameters["index_kind"])
        index.set_display_name("FAISS index")

        packaged = package_model(model=trained.outputs["model"])
        packaged.set_display_name("TorchServe model store")

        with dsl.If(registry_uri != "", name="registry-configured"):
            registered = register_model(
                model=trained.outputs["model"],
                model_store=packaged.outputs["model_store"],
                index=index.outputs["index"],
                evaluation=evaluated.outputs["evaluation"],
                decision=gated.outputs["decision"],
                promote=gated.outputs["promote"],
                registry_uri=registry_uri,
                params=train,
            )
            registered.set_display_name("register (MLflow) + promote if the gate passed")
            registered.set_caching_options(False)

        return TrainingOutputs(
            model_store=packaged.outputs["model_store"],
            index=index.outputs["index"],
            feature_repo=features.outputs["feature_repo"],
            promoted=gated.outputs["promote"],
        )

    return training_pipeline


training_pipeline = build_training_pipeline(gpu=True)


def compile_pipeline(package_path: str, gpu: bool = True) -> None:
    compiler.Compiler().compile(build_training_pipeline(gpu), package_path=package_path)


if __name__ == "__main__":
    compile_pipeline(sys.argv[1] if len(sys.argv) > 1 else "training_pipeline.yaml", gpu="--cpu-only" not in sys.argv)
