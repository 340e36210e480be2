from kfp import dsl
from kfp.dsl import Markdown, Output

from fashionrec.config import IMAGE_TRAINING_PIPELINE, PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def trigger_training(
    retrain: bool,
    catalog_uri: str,
    run: Output[Markdown],
    training_parameters: dict = {},  # noqa: B006 (KFP parameters need literal defaults)
    kfp_host: str = "",
    experiment: str = "fashionrec",
    package_path: str = IMAGE_TRAINING_PIPELINE,
) -> None:
    """When ``retrain`` (the monitor's decision; else nothing happens and the Markdown says so), start a run of the
    training pipeline on ``catalog_uri`` through the KFP API (kfp.Client: ``kfp_host``, else the in-cluster
    ml-pipeline service, with the pod's service-account token). Its gate and canary decide what reaches
    production. ``training_parameters`` are further parameters of the training pipeline."""
    from pathlib import Path

    from fashionrec.kubeflow.submit import submit_run

    if not retrain:
        Path(run.path).write_text("# No training run: the monitor saw no reason to retrain\n")
        return
    params = [f"catalog_uri={catalog_uri}", *(f"{k}={v}" for k, v in training_parameters.items())]
    submitted = submit_run(kfp_host or None, Path(package_path), params, experiment=experiment, run_name="retraining (monitor)")
    Path(run.path).write_text(f"# Training run started\n\n[{submitted.run_id}]({submitted.url})\n")
    run.metadata.update({"run_id": submitted.run_id, "url": submitted.url})
