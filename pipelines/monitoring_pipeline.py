"""The monitoring pipeline: the transformers' request log against the production model's reference profile, a drift
report, and, when the decision says so, a run of the training pipeline (KFP v2). Schedule it
(`fashionrec pipeline schedule`) to close the loop: the training run's gate and canary decide what reaches production.
"""

import sys

from kfp import compiler, dsl
from kfp.dsl import Dataset
from kfp.dsl.graph_component import GraphComponent

from components.monitor_requests import monitor_requests
from components.trigger_training import trigger_training
from fashionrec.config import LOG_RETENTION_DAYS, RETRAINING_COOLDOWN_HOURS
from pipelines.training_pipeline import REGISTRY, STORAGE, with_secrets

PIPELINE_NAME = "fashionrec-monitoring"


def build_monitoring_pipeline(gpu: bool = True) -> GraphComponent:
    """The pipeline (``gpu`` is accepted for a uniform compile call: nothing here trains)."""

    @dsl.pipeline(name=PIPELINE_NAME, description="Drift of live queries against the production model; retrain when needed")
    def monitoring_pipeline(
        request_log_uri: str,
        releases_uri: str,
        catalog_uri: str,
        registry_uri: str = "",
        model_version: str = "",
        new_items: int = 0,
        kfp_host: str = "",
        event_log_uri: str = "",
        catalog_changes_uri: str = "",
        cooldown_hours: float = RETRAINING_COOLDOWN_HOURS,
        log_retention_days: float = LOG_RETENTION_DAYS,
    ) -> None:
        """Monitor the production model and retrain it when its queries drifted.

        Args:
            request_log_uri: the transformers' --request_log folder (JSONL part files) in object storage.
            releases_uri: the training pipeline's releases_uri (the production release holds the reference profile).
            catalog_uri: the catalogue a retraining run trains on (the training pipeline's catalog_uri).
            registry_uri: MLflow tracking URI: the production alias names the model monitored.
            model_version: the model monitored, when there is no registry.
            new_items: products added since the production model's training run (retrain at a fifth of its catalogue),
                when there is no change log to count them from.
            kfp_host: the KFP API for the retraining run (empty: the in-cluster ml-pipeline service).
            event_log_uri: the transformers' --event_log (shoppers' feedback): retrain on a significant CTR@5 drop.
            catalog_changes_uri: the catalogue change log: products added since the production release are counted.
            cooldown_hours: no retraining run while one is in flight or within this long of the last one.
            log_retention_days: the days of the request and event logs the monitor reads (older parts are not).
        """
        imported = dsl.importer(artifact_uri=request_log_uri, artifact_class=Dataset, reimport=True)
        imported.set_display_name("import the request log")
        monitored = monitor_requests(
            request_log=imported.output,
            releases_uri=releases_uri,
            model_version=model_version,
            registry_uri=registry_uri,
            new_items=new_items,
            event_log_uri=event_log_uri,
            catalog_changes_uri=catalog_changes_uri,
            log_retention_days=log_retention_days,
        )
        monitored.set_display_name("drift report and decision")
        monitored.set_caching_options(False)  # the log grows between runs under the same URI
        with_secrets(monitored, STORAGE, REGISTRY)
        # The decision is an input, not a dsl.If (kfp.local cannot evaluate a condition on a task's output).
        triggered = trigger_training(
            retrain=monitored.outputs["retrain"], catalog_uri=catalog_uri, kfp_host=kfp_host, cooldown_hours=cooldown_hours
        )
        triggered.set_display_name("start a training run when the decision says so")
        triggered.set_caching_options(False)

    return monitoring_pipeline


monitoring_pipeline = build_monitoring_pipeline()


def compile_pipeline(package_path: str, gpu: bool = True) -> None:
    compiler.Compiler().compile(build_monitoring_pipeline(gpu), package_path=package_path)


if __name__ == "__main__":
    compile_pipeline(sys.argv[1] if len(sys.argv) > 1 else "monitoring_pipeline.yaml")
