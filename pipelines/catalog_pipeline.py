"""The catalogue-update pipeline: a batch of new and removed products made live without retraining (KFP v2).

Import the batch (styles.csv + images/ in object storage), validate it with the training pipeline's Great Expectations
suite, encode it with every served encoder, write the shared online store, and record the change that every
transformer replica applies to its live FAISS index. Schedule it (`fashionrec pipeline schedule`) for a daily feed.
"""

import sys

from kfp import compiler, dsl
from kfp.dsl import Dataset
from kfp.dsl.graph_component import GraphComponent

from components.update_catalog import update_catalog
from pipelines.training_pipeline import FEAST, STORAGE, with_secrets

PIPELINE_NAME = "fashionrec-catalog-update"


def build_catalog_pipeline(gpu: bool = True) -> GraphComponent:
    """The pipeline (``gpu`` is accepted for a uniform compile call: nothing here trains)."""

    @dsl.pipeline(name=PIPELINE_NAME, description="Add and remove catalogue products live, without retraining")
    def catalog_pipeline(
        additions_uri: str,
        releases_uri: str,
        catalog_changes_uri: str,
        serving_target: str = "kserve://fashionrec",
        remove_ids: list = [],  # noqa: B006 (KFP parameters need literal defaults)
    ) -> None:
        """Add and remove catalogue products live.

        Args:
            additions_uri: folder of the new products (styles.csv + images/) in object storage (gs://, s3://, minio://).
            releases_uri: the training pipeline's releases_uri: the served releases' Feast repos name the shared store.
            catalog_changes_uri: the change log the transformers apply (their --catalog_changes).
            serving_target: the InferenceService, kserve://[NAMESPACE/]NAME (as the training pipeline's deploy_target):
                the versions it serves now (production, and a canary during a rollout) and its predictor are read from it.
            remove_ids: ids of products to remove.
        """
        imported = dsl.importer(artifact_uri=additions_uri, artifact_class=Dataset, reimport=True)
        imported.set_display_name("import the new products")
        updated = update_catalog(
            additions=imported.output,
            releases_uri=releases_uri,
            catalog_changes_uri=catalog_changes_uri,
            serving_target=serving_target,
            remove_ids=remove_ids,
        )
        updated.set_display_name("validate, encode, write the online store, record the change")
        updated.set_caching_options(False)  # it changes what is served
        with_secrets(updated, STORAGE, FEAST)

    return catalog_pipeline


catalog_pipeline = build_catalog_pipeline()


def compile_pipeline(package_path: str, gpu: bool = True) -> None:
    compiler.Compiler().compile(build_catalog_pipeline(gpu), package_path=package_path)


if __name__ == "__main__":
    compile_pipeline(sys.argv[1] if len(sys.argv) > 1 else "catalog_pipeline.yaml")
