"""The training pipeline: import -> validate -> train -> embed -> evaluate -> gate -> (features, index, package) ->
register -> deploy (canary, then promote or roll back).

Compile: `python -m pipelines.training_pipeline OUT.yaml` from the repo root (CI compiles every pipeline module); run locally with
`fashionrec pipeline run --catalog DIR` (kfp.local), or upload the YAML in the KFP UI.
"""

import sys
from typing import Any, NamedTuple

from kfp import compiler, dsl, kubernetes
from kfp.dsl import Artifact, Dataset, Model, PipelineTask
from kfp.dsl.graph_component import GraphComponent

from components.build_index import build_index
from components.deploy_model import deploy_model
from components.embed_catalog import embed_catalog
from components.evaluate_model import evaluate_model
from components.gate_model import gate_model
from components.materialize_features import materialize_features
from components.package_model import package_model
from components.register_model import register_model
from components.train_encoder import train_encoder
from components.validate_catalog import validate_catalog
from components.validate_catalog_on_volume import validate_catalog_on_volume
from fashionrec.config import (
    CATALOG_MOUNT,
    FEAST_SECRET,
    FEAST_SECRET_KEYS,
    REGISTRY_SECRET,
    REGISTRY_SECRET_KEYS,
    STORAGE_SECRET,
    STORAGE_SECRET_KEYS,
)
from fashionrec.params import PipelineSettings, TrainConfig, kfp_signature, run_parameters

PIPELINE_NAME = "fashionrec-training"


class TrainingOutputs(NamedTuple):
    model_store: Model
    index: Artifact
    feature_repo: Artifact
    gate_passed: bool  # the gate's decision; the deploy step's outcome is its report (and the registry's alias)


def with_secrets(task: PipelineTask, *secrets: tuple[str, tuple[str, ...]]) -> PipelineTask:
    """Credentials reach a step as environment variables from Kubernetes Secrets, never as parameters. Optional:
    with Workload Identity or IRSA there is no Secret (kfp.local ignores these)."""
    for name, keys in secrets:
        kubernetes.use_secret_as_env(task, secret_name=name, secret_key_to_env={k: k for k in keys}, optional=True)
    return task


STORAGE = (STORAGE_SECRET, STORAGE_SECRET_KEYS)
REGISTRY = (REGISTRY_SECRET, REGISTRY_SECRET_KEYS)
FEAST = (FEAST_SECRET, FEAST_SECRET_KEYS)  # a shared online store's and SQL registry's passwords


def build_training_pipeline(gpu: bool = True) -> GraphComponent:
    """The pipeline; ``gpu`` makes the train step request one NVIDIA GPU (the code falls back to the CPU) and takes the
    defaults a GPU cluster wants: ImageNet weights (downloaded by the step into the torch hub cache) and more epochs."""

    @dsl.pipeline(name=PIPELINE_NAME, description="Validate a fashion catalogue, train the encoder, index and serve-package it")
    @kfp_signature(TrainConfig, PipelineSettings, gpu_cluster=gpu)
    def training_pipeline(catalog_uri: str, catalog_pvc: str = "", **parameters: Any) -> TrainingOutputs:
        """Validate a fashion catalogue, train and evaluate the encoder, gate it against production, build what
        serving needs (Feast online store, FAISS index, TorchServe model store), register it in the model registry
        and roll it out (canary, then promote or roll back).

        Args:
            catalog_uri: Kaggle-layout catalogue folder (styles.csv + images/): gs://, s3:// or minio:// URI (imported and downloaded by KFP), or with catalog_pvc the folder's path inside that volume.
            catalog_pvc: name of a PersistentVolumeClaim holding the catalogue (empty: catalog_uri is object storage).
        """
        train = {p.name: parameters[p.name] for p in run_parameters(TrainConfig, pipeline=True)}
        holdout_fraction = parameters["holdout_fraction"]
        registry_uri = parameters["registry_uri"]
        settings = parameters["validation_settings"]
        with dsl.If(catalog_pvc == "", name="catalogue-in-object-storage"):
            imported = dsl.importer(artifact_uri=catalog_uri, artifact_class=Dataset, reimport=True)
            imported.set_display_name("import catalogue")
            from_storage = validate_catalog(catalog=imported.output, validation_settings=settings)
            from_storage.set_display_name("validate catalogue (Great Expectations)")
            from_storage.set_caching_options(False)  # the catalogue can change under the same URI
        with dsl.Else(name="catalogue-on-volume"):
            on_volume = validate_catalog_on_volume(catalog_dir=f"{CATALOG_MOUNT}/{catalog_uri}", validation_settings=settings)
            on_volume.set_display_name("validate catalogue on volume (Great Expectations)")
            on_volume.set_caching_options(False)
            kubernetes.mount_pvc(on_volume, pvc_name=catalog_pvc, mount_path=CATALOG_MOUNT)
        valid_catalog = dsl.OneOf(from_storage.outputs["valid_catalog"], on_volume.outputs["valid_catalog"])

        logs = {"request_log_uri": parameters["request_log_uri"], "event_log_uri": parameters["event_log_uri"]}
        trained = train_encoder(valid_catalog=valid_catalog, config=train, registry_uri=registry_uri, **logs)
        trained.set_display_name("train encoder")
        with_secrets(trained, STORAGE, REGISTRY)  # the logs co-clicked pairs come from; weights=production
        trained.set_cpu_request("2").set_memory_request("8G").set_memory_limit("16G")
        # Retries resume from the checkpoint the step writes after every epoch (pre-emptible GPU nodes).
        trained.set_retry(num_retries=2, backoff_duration="60s")
        if gpu:
            trained.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)

        embedded = embed_catalog(valid_catalog=valid_catalog, model=trained.outputs["model"])
        embedded.set_display_name("embed catalogue")

        evaluated = evaluate_model(
            valid_catalog=valid_catalog,
            model=trained.outputs["model"],
            embeddings=embedded.outputs["embeddings"],
            holdout_fraction=holdout_fraction,
            **logs,
        )
        evaluated.set_display_name("evaluate retrieval")
        with_secrets(evaluated, STORAGE)  # the logs it replays are in object storage

        gated = gate_model(
            valid_catalog=valid_catalog,
            candidate_evaluation=evaluated.outputs["evaluation"],
            registry_uri=registry_uri,
            holdout_fraction=holdout_fraction,
            min_improvement=parameters["min_improvement"],
            min_precision_at_5=parameters["min_precision_at_5"],
            gate_guards=parameters["gate_guards"],
        )
        gated.set_display_name("gate against production")
        gated.set_caching_options(False)  # production changes between runs
        with_secrets(gated, REGISTRY)

        features = materialize_features(
            embeddings=embedded.outputs["embeddings"],
            promote=gated.outputs["promote"],
            online_store=parameters["online_store"],
            feast_registry=parameters["feast_registry"],
        )
        features.set_display_name("feast apply + materialize")
        features.set_caching_options(False)  # it writes the online store, a side effect caching would skip
        with_secrets(features, FEAST)

        index = build_index(
            embeddings=embedded.outputs["embeddings"],
            valid_catalog=valid_catalog,
            index_kind=parameters["index_kind"],
            index_recall_target=parameters["index_recall_target"],
            holdout_fraction=holdout_fraction,
        )
        index.set_display_name("FAISS index")

        packaged = package_model(model=trained.outputs["model"])
        packaged.set_display_name("TorchServe model store")

        registered = register_model(
            model=trained.outputs["model"],
            model_store=packaged.outputs["model_store"],
            index=index.outputs["index"],
            evaluation=evaluated.outputs["evaluation"],
            decision=gated.outputs["decision"],
            registry_uri=registry_uri,
            params=train,
        )
        registered.set_display_name("register (MLflow)")
        registered.set_caching_options(False)
        with_secrets(registered, STORAGE, REGISTRY)

        # The gate's decision is an input, not a dsl.If: kfp.local 2.17 cannot evaluate a condition on a task's output
        # (it logs "Could not resolve CEL parameter" and skips the branch), and a local run must deploy like a cluster's.
        deployed = deploy_model(
            model_store=packaged.outputs["model_store"],
            index=index.outputs["index"],
            feature_repo=features.outputs["feature_repo"],
            valid_catalog=valid_catalog,
            gate_passed=gated.outputs["promote"],
            deploy_target=parameters["deploy_target"],
            releases_uri=parameters["releases_uri"],
            registry_uri=registry_uri,
            registered_version=registered.output,
            canary_percent=parameters["canary_percent"],
            prometheus_url=parameters["prometheus_url"],
            scrape_interval_s=parameters["scrape_interval_s"],
            allow_unregistered_deploy=parameters["allow_unregistered_deploy"],
            holdout_fraction=holdout_fraction,
            catalog_changes_uri=parameters["catalog_changes_uri"],
        )
        deployed.set_display_name("deploy: canary, then promote or roll back")
        deployed.set_caching_options(False)  # it changes what is served
        with_secrets(deployed, STORAGE, REGISTRY, FEAST)  # FEAST: it retires the replaced version's vectors

        return TrainingOutputs(
            model_store=packaged.outputs["model_store"],
            index=index.outputs["index"],
            feature_repo=features.outputs["feature_repo"],
            gate_passed=gated.outputs["promote"],
        )

    return training_pipeline


training_pipeline = build_training_pipeline(gpu=True)


def compile_pipeline(package_path: str, gpu: bool = True) -> None:
    compiler.Compiler().compile(build_training_pipeline(gpu), package_path=package_path)


if __name__ == "__main__":
    compile_pipeline(sys.argv[1] if len(sys.argv) > 1 else "training_pipeline.yaml", gpu="--cpu-only" not in sys.argv)
