from kfp import dsl
from kfp.dsl import Markdown, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def trigger_training(
    retrain: bool,
    catalog_uri: str,
    run: Output[Markdown],
    cooldown_hours: float,  # no default here: KFP ships this function's source alone (the pipeline passes it)
    training_parameters: dict = {},  # noqa: B006 (KFP parameters need literal defaults)
    kfp_host: str = "",
    experiment: str = "fashionrec",
    package_path: str = "",
) -> None:
    """When ``retrain`` (the monitor's decision; else nothing happens and the Markdown says so), start a run of the
    training pipeline on ``catalog_uri`` through the KFP API (kfp.Client: ``kfp_host``, else the in-cluster
    ml-pipeline service, with the pod's service-account token). Its gate and canary decide what reaches
    production. ``training_parameters`` are further parameters of the training pipeline. No run is started while a
    run of the training pipeline in ``experiment`` is in flight, or within ``cooldown_hours`` of the last one: a
    monitor that fires every tick starts one retraining, not one per tick. ``package_path``: the compiled training
    pipeline to submit (empty: the one this image carries, compiled with the image's own name)."""
    from pathlib import Path

    from fashionrec.config import IMAGE_TRAINING_PIPELINE
    from fashionrec.kubeflow.submit import RunHeld, submit_run

    if not retrain:
        Path(run.path).write_text("# No training run: the monitor saw no reason to retrain\n")
        return
    params = [f"catalog_uri={catalog_uri}", *(f"{k}={v}" for k, v in training_parameters.items())]
    try:
        submitted = submit_run(
            kfp_host or None, Path(package_path or IMAGE_TRAINING_PIPELINE), params, experiment=experiment,
            run_name="retraining (monitor)", cooldown_s=cooldown_hours * 3600,
        )  # fmt: skip
    except RunHeld as held:
        Path(run.path).write_text(f"# No training run: held\n\n{held}\n")
        return
    Path(run.path).write_text(f"# Training run started\n\n[{submitted.run_id}]({submitted.url})\n")
    run.metadata.update({"run_id": submitted.run_id, "url": submitted.url})
