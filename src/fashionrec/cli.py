"""The `fashionrec` command: every pipeline stage, the local pipeline run, serving, querying and the demo."""

from __future__ import annotations

import contextlib
import json
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from fashionrec.config import (
    DEFAULT_TOP_K,
    DEFECTS_FILE,
    GALLERY_PORT,
    IMAGE_REGISTRY,
    IMAGE_TAG,
    INDEX_RECALL_TARGET,
    LOG_RETENTION_DAYS,
    LOOPBACK,
    MAX_IMAGE_BYTES,
    MODEL_NAME,
    PRODUCTION_WEIGHTS,
    RETRAINING_COOLDOWN_HOURS,
    predictor_model_name,
)
from fashionrec.console import console
from fashionrec.local.tables import print_hits, print_versions

if TYPE_CHECKING:
    from fashionrec.kubeflow.submit import PipelineVersionRef
    from fashionrec.training.registry import MlflowRegistry

from fashionrec.params import IndexKind, PipelineSettings, TrainConfig, cli_signature, from_values
from fashionrec.workdir import DEFAULT_WORKDIR, WorkDir

app = typer.Typer(help="Visual 'more like this' recommendations for fashion catalogues.", no_args_is_help=True)
data_app = typer.Typer(help="Catalogue data.", no_args_is_help=True)
pipeline_app = typer.Typer(help="The Kubeflow training pipeline.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")
model_app = typer.Typer(help="The model registry (MLflow): versions, production alias, promote, rollback.", no_args_is_help=True)
app.add_typer(model_app, name="model")
catalog_app = typer.Typer(help="Products added or removed live, without retraining.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
images_app = typer.Typer(help="The container images (the Dockerfile's two targets).", no_args_is_help=True)
app.add_typer(images_app, name="images")

Workdir = Annotated[
    Path, typer.Option(help="Folder of local pipeline runs: their outputs, the registry (mlflow.db), deployment records.")
]


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="Folder to write styles.csv and images/ into.")],
    items_per_type: Annotated[int, typer.Option(help="Items per article type.")] = 40,
    types: Annotated[int, typer.Option(help="Number of article types (2-13).")] = 13,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same catalogue.")] = 0,
    defects: Annotated[
        str, typer.Option(help='JSON {kind: rate} of defects to inject, e.g. \'{"blurry": 0.02}\'; "all" = every kind at 1%.')
    ] = "{}",
) -> None:
    """Write a synthetic catalogue in the Kaggle 'Fashion Product Images (Small)' layout, optionally damaged.

    Injected defects are listed with the quarantine reason validation must give them in OUT/defects.csv."""
    from fashionrec.data.synth import DEFECTS, inject_defects, synth_catalog

    table = synth_catalog(out, items_per_type=items_per_type, seed=seed, n_types=types)
    console.print(f"wrote {len(table)} items of {table['articleType'].nunique()} article types to {out}")
    rates = dict.fromkeys(DEFECTS, 0.01) if defects == "all" else json.loads(defects)
    if rates:
        injected = inject_defects(out, table, rates, seed=seed)
        injected.to_csv(out / DEFECTS_FILE, index=False)
        console.print(f"injected {len(injected)} defects ({', '.join(sorted(rates))}); ground truth in {out / DEFECTS_FILE}")


@app.command()
def validate(
    catalog: Annotated[Path, typer.Option(help="Kaggle-layout catalogue folder.")],
    out: Annotated[
        Path,
        typer.Option(help="Output folder: valid.parquet, quarantine.csv, report.html, data_docs.html, dataset_manifest.json."),
    ],
    settings: Annotated[str, typer.Option(help="JSON overrides of the thresholds, e.g. '{\"min_sharpness\": 20}'.")] = "{}",
) -> None:
    """Validate a catalogue with Great Expectations; quarantine bad rows with a reason."""
    from fashionrec.data.validation.checks import ValidationSettings
    from fashionrec.data.validation.quarantine import validate_catalog
    from fashionrec.data.validation.report import output_paths, write_outputs

    result = validate_catalog(catalog, ValidationSettings.from_overrides(json.loads(settings)))
    metrics = write_outputs(result, catalog, output_paths(out))
    console.print_json(json.dumps(metrics))


@app.command()
@cli_signature(TrainConfig)
def train(
    valid: Annotated[Path, typer.Option(help="valid.parquet from `fashionrec validate`.")],
    out: Annotated[Path, typer.Option(help="Model folder to write.")],
    registry_uri: Annotated[
        str, typer.Option(help="Model registry that --weights production reads (default: the work folder's).")
    ] = "",
    **config: Any,
) -> None:
    """Train the encoder on articleType."""
    from fashionrec.training.registry import default_registry_uri
    from fashionrec.training.train import train as run_training

    settings = from_values(TrainConfig, config)
    if settings.weights == PRODUCTION_WEIGHTS and not registry_uri:
        registry_uri = default_registry_uri()
    card = run_training(valid, out, settings, registry_uri=registry_uri)
    console.print_json(json.dumps(asdict(card) | {"classes": len(card.classes)}))


@app.command()
def embed(
    valid: Annotated[Path, typer.Option(help="valid.parquet from `fashionrec validate`.")],
    model: Annotated[Path, typer.Option(help="Model folder.")],
    out: Annotated[Path, typer.Option(help="Embeddings parquet to write.")],
) -> None:
    """Embed every valid item (Feast's offline source)."""
    from fashionrec.training.embed import embed_catalog

    table = embed_catalog(valid, model, out)
    console.print(f"{len(table)} embeddings of model {table['model_version'].iloc[0]} -> {out}")


@app.command()
def features(
    embeddings: Annotated[Path, typer.Option(help="Embeddings parquet.")],
    repo: Annotated[Path, typer.Option(help="Feast repo folder to stage and materialize.")],
) -> None:
    """Stage the Feast repo, then apply + materialize into the online store."""
    from fashionrec.retrieval.feast_store import apply_and_materialize, stage_repo

    console.print(apply_and_materialize(stage_repo(embeddings, repo)))


@app.command()
def index(
    embeddings: Annotated[Path, typer.Option(help="Embeddings parquet.")],
    out: Annotated[Path, typer.Option(help="Index folder to write.")],
    kind: Annotated[
        IndexKind, typer.Option(help="auto (the fastest that reaches the recall target, measured), flat (exact), hnsw or ivf.")
    ] = IndexKind.AUTO,
    recall_target: Annotated[
        float, typer.Option(help="Recall@10 against exact search the index must reach.")
    ] = INDEX_RECALL_TARGET,
) -> None:
    """Build the FAISS index, chosen and tuned on the embeddings themselves."""
    from fashionrec.retrieval.index import build_index

    console.print(asdict(build_index(embeddings, out, kind, recall_target)))


@app.command()
def package(
    model: Annotated[Path, typer.Option(help="Model folder.")],
    out: Annotated[Path, typer.Option(help="Model store folder: config/ + model-store/.")],
) -> None:
    """Export the encoder into a TorchServe model store for KServe."""
    from fashionrec.serving.package import build_model_store

    console.print(f"wrote {build_model_store(model, out)}")


@pipeline_app.command("compile")
def pipeline_compile(
    out: Annotated[Path, typer.Option(help="Folder for the compiled YAML.")] = Path("build/pipelines"),
    gpu: Annotated[
        bool, typer.Option(help="The train step requests one nvidia.com/gpu (--no-gpu for CPU-only clusters).")
    ] = True,
    image: Annotated[
        str,
        typer.Option(
            help="The image every step runs in (REGISTRY/NAME:TAG or NAME@sha256:DIGEST, as `make images` built and "
            "pushed it); default: the project's published image."
        ),
    ] = "",
) -> None:
    """Compile every pipeline to YAML (upload it in the KFP UI)."""
    from fashionrec.local.pipeline_runner import compile_all

    for path in compile_all(out, gpu=gpu, image=image):
        console.print(f"compiled {path}")


@images_app.command("build")
def images_build(
    registry: Annotated[
        str, typer.Option(help="Registry path the images are named under (e.g. my.registry/team).")
    ] = IMAGE_REGISTRY,
    tag: Annotated[str, typer.Option(help="Their tag.")] = IMAGE_TAG,
    base: Annotated[
        str, typer.Option(help="Base image (default: the Dockerfile's; a Debian stand-in is made where it cannot be pulled).")
    ] = "",
    target: Annotated[list[str] | None, typer.Option(help="Build only these targets (transformer, pipeline).")] = None,
    torch_index_url: Annotated[
        str, typer.Option(help="pip index for torch in the pipeline image, e.g. https://download.pytorch.org/whl/cpu (CPU-only).")
    ] = "",
    report: Annotated[Path, typer.Option(help="Where the names, ids, sizes and build times are written.")] = Path(
        "build/images.json"
    ),
) -> None:
    """Build both images with docker, or buildah where no Docker engine runs; then push them with the same tool."""
    from fashionrec.images.build import TARGETS, ImageNames, build_images

    names = ImageNames(registry, tag)
    unknown = set(target or []) - set(TARGETS)
    if unknown:
        raise typer.BadParameter(f"unknown targets {sorted(unknown)}: choose from {', '.join(TARGETS)}")
    built = build_images(
        names,
        base=base,
        targets=tuple(t for t in TARGETS if t in (target or TARGETS)),
        report=report,
        torch_index_url=torch_index_url,
    )
    console.print(f"wrote {report}. Next: push, then `fashionrec pipeline compile --image {names.pipeline}` and set the")
    console.print("manifests' images (README, Deploying to a cluster):")
    for entry in built["images"].values():
        console.print(f"  {entry['name']}")


@pipeline_app.command("run")
@cli_signature(TrainConfig, PipelineSettings)
def pipeline_run(
    catalog: Annotated[Path, typer.Option(help="Kaggle-layout catalogue folder (styles.csv + images/).")],
    workdir: Workdir = DEFAULT_WORKDIR,
    **parameters: Any,
) -> None:
    """Run the whole training pipeline locally with kfp.local, as the cluster would run it."""
    from fashionrec.local.pipeline_runner import run_local

    train_config = from_values(TrainConfig, parameters, strict=False)
    settings = from_values(PipelineSettings, parameters, strict=False)
    log = WorkDir(workdir).pipeline_log
    console.print(f"full log of every step: {log}")
    run = run_local(catalog, workdir, train_config, settings, log_file=log)
    version = run.deployment.model_version
    if run.promoted:
        outcome = f"[green]model {version} released and promoted[/green] (`fashionrec serve --workdir {workdir}` serves it)"
    elif run.gate_passed:
        outcome = f"[yellow]model {version} passed the gate but the canary rolled it back[/yellow]: production untouched"
    else:
        outcome = f"[yellow]model {version} rejected by the gate[/yellow]: production untouched"
    console.print(f"pipeline finished: {outcome}; this run's outputs: {WorkDir(workdir).deployment_record}")


T = TypeVar("T")


def kfp_call(call: Callable[[], T]) -> T:
    """A call to the KFP API; its KfpSubmitError is one red line and exit code 1, no traceback."""
    from fashionrec.kubeflow.submit import KfpSubmitError

    try:
        return call()
    except KfpSubmitError as exc:
        console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc


def print_pipeline_version(version: PipelineVersionRef) -> None:
    uploaded = "uploaded" if version.version_uploaded else "already uploaded"
    console.print(f"pipeline {version.pipeline_name}, version {version.version_name} ({uploaded})", soft_wrap=True)


@pipeline_app.command("submit")
def pipeline_submit(
    host: Annotated[
        str | None,
        typer.Option(
            help="KFP API URL: http://localhost:8080 after `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`, "
            "or https://<kubeflow host>/pipeline. Default: $KF_PIPELINES_ENDPOINT, else (inside a pod) "
            "http://ml-pipeline.kubeflow.svc.cluster.local:8888 as kfp.Client does."
        ),
    ] = None,
    experiment: Annotated[str, typer.Option(help="Experiment to run in; created when missing.")] = "fashionrec",
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="Pipeline parameter NAME=VALUE, repeatable. VALUE is JSON where it parses (8, 0.01, true, {...}), else "
            "text; STRING parameters take the text as given. Checked against the YAML before anything is sent.",
        ),
    ] = None,
    run_name: Annotated[str | None, typer.Option(help="Run name (default: pipeline name and UTC time).")] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Profile namespace of a multi-user Kubeflow: pipeline, experiment and run live there.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Bearer token for the KFP API. Default: the token file $KF_PIPELINES_SA_TOKEN_PATH names, else (inside a "
            "pod) /var/run/secrets/kubeflow/pipelines/token when mounted, else none."
        ),
    ] = None,
    package: Annotated[
        Path | None, typer.Option(help="Compiled pipeline YAML to upload (default: pipelines/compiled/training_pipeline.yaml).")
    ] = None,
) -> None:
    """Upload the compiled training pipeline to Kubeflow Pipelines (a new version only when the YAML changed), then
    start a run of it and print the run's id and URL."""
    from fashionrec.kubeflow.submit import submit_run

    submitted = kfp_call(
        lambda: submit_run(host, package, param or [], experiment=experiment, run_name=run_name, namespace=namespace, token=token)
    )
    print_pipeline_version(submitted.pipeline)
    console.print(f"run {submitted.run_id} started in experiment {experiment}", soft_wrap=True)
    console.print(submitted.url, markup=False, soft_wrap=True)


@pipeline_app.command("schedule")
def pipeline_schedule(
    cron: Annotated[
        str,
        typer.Option(help="When to run, as 5-field cron (minute hour day-of-month month day-of-week), e.g. '0 3 * * *'."),
    ],
    host: Annotated[
        str | None,
        typer.Option(help="KFP API URL, as for `pipeline submit` (default: $KF_PIPELINES_ENDPOINT, else in-cluster)."),
    ] = None,
    experiment: Annotated[str, typer.Option(help="Experiment the runs go to; created when missing.")] = "fashionrec",
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Pipeline parameter NAME=VALUE, repeatable (as for `pipeline submit`).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Recurring run name (default: pipeline name and the cron).")] = None,
    max_concurrency: Annotated[int, typer.Option(help="Runs of this schedule at once (1-10).")] = 1,
    namespace: Annotated[str | None, typer.Option(help="Profile namespace of a multi-user Kubeflow.")] = None,
    token: Annotated[
        str | None, typer.Option(help="Bearer token (default: $KF_PIPELINES_SA_TOKEN_PATH's file, else in-cluster, else none).")
    ] = None,
    package: Annotated[
        Path | None, typer.Option(help="Compiled pipeline YAML to upload (default: pipelines/compiled/training_pipeline.yaml).")
    ] = None,
) -> None:
    """Upload the compiled training pipeline as for `pipeline submit`, then create an enabled recurring run on CRON
    (KFP's cron has a seconds field first: '0 ' is prepended; runs missed while paused are not caught up)."""
    from fashionrec.kubeflow.submit import schedule_run

    scheduled = kfp_call(
        lambda: schedule_run(
            host,
            cron,
            package,
            param or [],
            experiment=experiment,
            name=name,
            max_concurrency=max_concurrency,
            namespace=namespace,
            token=token,
        )
    )
    print_pipeline_version(scheduled.pipeline)
    console.print(
        f"recurring run {scheduled.recurring_run_id} in experiment {experiment}, KFP cron '{scheduled.cron}'", soft_wrap=True
    )
    console.print(scheduled.url, markup=False, soft_wrap=True)


RegistryOption = Annotated[
    str | None,
    typer.Option("--registry", help="MLflow tracking URI (default: $FASHIONREC_REGISTRY_URI, else sqlite in --workdir)."),
]


def open_registry(registry: str | None, workdir: Path) -> MlflowRegistry:
    from fashionrec.training.registry import MlflowRegistry, default_registry_uri

    return MlflowRegistry(registry or default_registry_uri(workdir))


@model_app.command("list")
def model_list(workdir: Workdir = DEFAULT_WORKDIR, registry: RegistryOption = None) -> None:
    """Every registered version, with its aliases and headline metrics."""
    print_versions(open_registry(registry, workdir).versions())


@model_app.command("show")
def model_show(version: int, workdir: Workdir = DEFAULT_WORKDIR, registry: RegistryOption = None) -> None:
    """One version in full: metrics, parameters, dataset digest, git commit, run id."""
    console.print_json(json.dumps(asdict(open_registry(registry, workdir).get(version))))


@model_app.command("promote")
def model_promote(version: int, workdir: Workdir = DEFAULT_WORKDIR, registry: RegistryOption = None) -> None:
    """Move the production alias to VERSION (the gate does this after a training run that beats production)."""
    promoted = open_registry(registry, workdir).promote(version)
    console.print(f"production -> version {promoted.version} (model {promoted.model_version})")


@model_app.command("rollback")
def model_rollback(
    workdir: Workdir = DEFAULT_WORKDIR,
    registry: RegistryOption = None,
    target: Annotated[
        str,
        typer.Option(help="local (`fashionrec serve --watch` follows the alias) or kserve://[NAMESPACE/]NAME (rolled back now)."),
    ] = "local",
    releases: Annotated[str, typer.Option(help="The releases' storage root on the cluster (the pipeline's releases_uri).")] = "",
    catalog_changes: Annotated[
        str, typer.Option(help="The catalogue change log on the cluster (the pipeline's catalog_changes_uri); empty: none.")
    ] = "",
) -> None:
    """Move the production alias back to the version that held it before; on a cluster, roll the InferenceService
    back to that version's release as well (through the kserve SDK)."""
    restored = open_registry(registry, workdir).rollback()
    console.print(f"production -> version {restored.version} (model {restored.model_version})")
    if target == "local":
        return
    from fashionrec.deploy.kserve_target import KServeTarget, kserve_client, pod_namespace
    from fashionrec.deploy.rollout import switch
    from fashionrec.deploy.step import parse_target

    parsed = parse_target(target)
    if parsed.kind != "kserve" or not releases:
        raise typer.BadParameter("a cluster rollback needs --target kserve://[NAMESPACE/]NAME and --releases URI")
    from fashionrec.catalog.update import fetch_feature_repo, replay_changes
    from fashionrec.data.changes import ChangeLog
    from fashionrec.deploy.step import catch_up_additions
    from fashionrec.retrieval.feast_store import ensure_materialized, retire_model_version

    with tempfile.TemporaryDirectory(prefix="fashionrec-rollback-") as tmp:
        # A shared online store dropped the restored version's vectors when it was replaced: put them back first,
        # then the catalogue changes made since; products added since are encoded by its encoder before it serves.
        repo = fetch_feature_repo(releases, restored.model_version, Path(tmp) / "feature_repo")
        replay = replay_changes(ChangeLog(catalog_changes), restored.model_version) if catalog_changes else None
        if ensure_materialized(repo, restored.model_version, replay):
            console.print(f"materialized the vectors of {restored.model_version} into the shared online store again")
        hook = catch_up_additions(repo, catalog_changes) if catalog_changes else None
        cluster = KServeTarget(kserve_client(), parsed.namespace or pod_namespace(), releases, parsed.name, before_canary=hook)
        replaced = switch(cluster, cluster.release_of(restored.model_version))
        retired = retire_model_version(repo, replaced) if replaced else None
    console.print(f"InferenceService {parsed.name}: {replaced or 'nothing'} -> {restored.model_version}")
    if retired is not None:
        console.print(f"deleted the {retired} vectors of {replaced} from the shared online store")


@app.command()
def serve(
    workdir: Workdir = DEFAULT_WORKDIR,
    watch: Annotated[
        float,
        typer.Option(help="Every this many seconds, hot-swap to the model that now holds the production alias (0: never)."),
    ] = 0.0,
    registry: RegistryOption = None,
    web: Annotated[bool, typer.Option(help="Also open the gallery (`fashionrec web`) on loopback.")] = True,
    web_port: Annotated[int, typer.Option(help="The gallery's port.")] = GALLERY_PORT,
    catalog: Annotated[
        Path | None, typer.Option(help="The catalogue the gallery shows (styles.csv + images/); default: WORKDIR/catalog.")
    ] = None,
) -> None:
    """Serve the production model (the registry's alias) of the workdir's runs: TorchServe (encoder) + the FAISS
    transformer on loopback, and the gallery, until Ctrl-C. `fashionrec model promote|rollback` changes what --watch
    serves."""
    from fashionrec.deploy.local_target import LocalServing, LocalTarget, watch_tick
    from fashionrec.local.deployment import production_deployment
    from fashionrec.serving.processes import LIVE_DIR, LocalTorchServe, serve_locally

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    changes = WorkDir(workdir).catalog_changes  # `fashionrec catalog add|remove` changes what it serves live
    requests = WorkDir(workdir).request_log  # what `fashionrec monitor` reads
    with (
        tempfile.TemporaryDirectory(prefix="fashionrec-serve-") as tmp,
        serve_locally(
            production_deployment(workdir, registry),
            Path(tmp),
            catalog_changes=changes,
            request_log=requests,
            event_log=WorkDir(workdir).event_log,  # shoppers' feedback: `fashionrec monitor` and experiments read it
        ) as (predictor, transformer),
    ):
        assert isinstance(predictor, LocalTorchServe)
        serving = LocalServing.of(predictor, transformer, Path(tmp) / LIVE_DIR)
        state = serving.save(workdir)  # a `fashionrec pipeline run` of this workdir rolls out onto these servers
        encoder = predictor_model_name(predictor.model_version)
        console.print(f"encoder (TorchServe, v2): {predictor.inference_url}/v2/models/{encoder}/infer")
        console.print(f"  its APIs take 'Authorization: Bearer KEY' with a key of {predictor.key_file} (owner-only)")
        console.print(f"[bold]transformer (v2): {transformer.url}/v2/models/{MODEL_NAME}/infer[/bold]")
        console.print(f"query it: fashionrec query --url {transformer.url} IMAGE.jpg   (Ctrl-C stops both servers)")
        target = LocalTarget(serving)
        try:
            with contextlib.ExitStack() as gallery, contextlib.suppress(KeyboardInterrupt):
                if web:
                    open_gallery(gallery, catalog or WorkDir(workdir).catalog, transformer.url, web_port)
                while not stop.wait(watch or None):
                    if outcome := watch_tick(target, lambda: production_deployment(workdir, registry)):
                        console.print(outcome)
        finally:
            state.unlink(missing_ok=True)


def open_gallery(stack: contextlib.ExitStack, catalog: Path, transformer_url: str, port: int) -> None:
    """`fashionrec serve`'s gallery, closed with ``stack``; one that cannot start is reported, serving goes on."""
    from fashionrec.web.gallery import GallerySettings, GalleryStartError, serving_gallery

    try:
        gallery = stack.enter_context(serving_gallery(GallerySettings(catalog, transformer_url, port=port)))
    except GalleryStartError as exc:
        console.print(f"[yellow]gallery not started: {exc}[/yellow]")
        return
    console.print(f"[bold]gallery: open {gallery.url} in a browser[/bold] (browse the catalogue, click a product, drop a photo)")


@app.command("web")
def web_gallery(
    url: Annotated[str, typer.Option(help="The transformer's base URL (what `fashionrec serve` prints).")],
    catalog: Annotated[Path, typer.Option(help="The catalogue the transformer serves: styles.csv + images/<id>.jpg.")],
    compare_url: Annotated[
        str | None,
        typer.Option(help="A second transformer (another model version, e.g. a canary's): its neighbours side by side."),
    ] = None,
    host: Annotated[str, typer.Option(help="Loopback address to listen on (the gallery has no authentication).")] = LOOPBACK,
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free one).")] = GALLERY_PORT,
    top_k: Annotated[int, typer.Option(help="Neighbours shown per query.")] = DEFAULT_TOP_K,
    max_upload_bytes: Annotated[int, typer.Option(help="Largest photo accepted (a larger one gets a 413).")] = MAX_IMAGE_BYTES,
) -> None:
    """The gallery: a web page to browse the catalogue, click a product or drop a photo and see its most similar
    products, from one transformer or two side by side. A v2 client like any other; Ctrl-C stops it."""
    from fashionrec.web.gallery import GallerySettings, GalleryStartError, serving_gallery

    settings = GallerySettings(catalog, url, compare_url, host, port, top_k, max_upload_bytes)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with serving_gallery(settings) as gallery, contextlib.suppress(KeyboardInterrupt):
            console.print(f"[bold]gallery: open {gallery.url} in a browser[/bold]   (Ctrl-C stops it)")
            stop.wait()
    except GalleryStartError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


CatalogOption = Annotated[
    Path, typer.Option(help="The catalogue folder the pipeline trains from: it gains the added rows and loses the removed.")
]


def running_serving(workdir: Path) -> Any:
    from fashionrec.deploy.local_target import LocalServing

    serving = LocalServing.running(workdir)
    if serving is None:
        console.print(f"[red]nothing is served from {workdir}: start `fashionrec serve --workdir {workdir}` first[/red]")
        raise typer.Exit(1)
    return serving


@catalog_app.command("add")
def catalog_add(
    images: Annotated[Path, typer.Option(help="Folder of the new products' images (<id>.jpg).")],
    styles: Annotated[Path, typer.Option(help="styles.csv of the new products (the catalogue's columns).")],
    catalog: CatalogOption,
    workdir: Workdir = DEFAULT_WORKDIR,
) -> None:
    """Validate new products, encode them with every served encoder, and make them recommendable now: online store,
    the served indexes (within seconds, no restart) and the catalogue the next retrain reads."""
    from fashionrec.catalog.update import add_items, stage_additions
    from fashionrec.data.changes import ChangeLog

    serving = running_serving(workdir)
    with tempfile.TemporaryDirectory(prefix="fashionrec-add-") as tmp:
        additions = stage_additions(images, styles, Path(tmp) / "additions")
        report_dir = WorkDir(workdir).catalog_reports / time.strftime("%Y%m%dT%H%M%S")
        predictor = serving.predictor()
        result = add_items(
            additions, serving.served(), predictor, ChangeLog(str(WorkDir(workdir).catalog_changes)), catalog, report_dir
        )
    console.print(
        f"added {len(result.added)} product(s), encoded by model version(s) {', '.join(result.model_versions) or '-'}; "
        f"{result.quarantined} row(s) quarantined (report: {report_dir})"
    )


@catalog_app.command("remove")
def catalog_remove(
    item_ids: Annotated[list[int], typer.Argument(help="Ids of the products to remove.")],
    catalog: CatalogOption,
    workdir: Workdir = DEFAULT_WORKDIR,
) -> None:
    """Remove products from the online store, the served indexes and the catalogue (lines kept in removed.jsonl, images in removed_images/)."""
    from fashionrec.catalog.update import remove_items
    from fashionrec.data.changes import ChangeLog

    serving = running_serving(workdir)
    result = remove_items(item_ids, serving.served(), ChangeLog(str(WorkDir(workdir).catalog_changes)), catalog)
    console.print(
        f"removed {len(result.removed)} product(s)" + (f"; not in the online store: {result.unknown}" if result.unknown else "")
    )


@catalog_app.command("compact")
def catalog_compact(
    older_than_days: Annotated[
        float | None, typer.Option(help="Fold the changes made longer ago than this; default: the change log's retention.")
    ] = None,
    changes: Annotated[
        str | None, typer.Option(help="The change log (a folder, gs://, s3://); default: WORKDIR's catalogue changes.")
    ] = None,
    workdir: Workdir = DEFAULT_WORKDIR,
) -> None:
    """Fold the old catalogue changes into the change log's compacted state (the last change of each product) and
    delete their files, so that the log stops growing with every edit; the served replicas keep what they applied."""
    from fashionrec.data.changes import ChangeLog
    from fashionrec.storage import redact_urls

    log = ChangeLog(changes or str(WorkDir(workdir).catalog_changes))
    folded = log.compact() if older_than_days is None else log.compact(older_than=timedelta(days=older_than_days))
    console.print(f"folded {folded} change(s) into the compacted state of {redact_urls(log.uri)}", markup=False)


@app.command()
def monitor(
    workdir: Workdir = DEFAULT_WORKDIR,
    log: Annotated[
        Path | None, typer.Option(help="Request log (JSONL) of the transformer; default: WORKDIR/requests.jsonl.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for drift_report.html and decision.json; default: WORKDIR/monitoring.")
    ] = None,
    retrain: Annotated[bool, typer.Option(help="When the decision says so, run the training pipeline (kfp.local).")] = False,
    catalog: Annotated[Path | None, typer.Option(help="The catalogue to retrain on (with --retrain).")] = None,
    registry: RegistryOption = None,
    cooldown_hours: Annotated[
        float, typer.Option(help="No retraining while one runs, or within this long of the last one started.")
    ] = RETRAINING_COOLDOWN_HOURS,
    retention_days: Annotated[
        float, typer.Option(help="Read the request and event logs' lines of this many days only.")
    ] = LOG_RETENTION_DAYS,
) -> None:
    """Compare what the production model was asked (the request log) with what it learned (its reference profile),
    and how shoppers engaged with it (the event log): an HTML drift report, a decision (retrain or not, with reasons)
    and, with --retrain, a training run whose gate and canary decide what reaches production."""
    from fashionrec.catalog.update import latest_changes
    from fashionrec.data.changes import ChangeLog
    from fashionrec.drift.profile import ReferenceProfile
    from fashionrec.engagement.events import FeedbackEvent
    from fashionrec.local.deployment import production_deployment
    from fashionrec.monitoring.report import (
        RequestLog,
        analyse,
        decide_retraining,
        engagement_drop,
        read_events,
        write_report,
    )
    from fashionrec.storage import SkippedLines

    if retrain and catalog is None:
        raise typer.BadParameter("--retrain needs --catalog (the catalogue to train on)")
    deployment = production_deployment(workdir, registry)
    profile = ReferenceProfile.of_index(deployment.index_dir)
    if profile is None:
        console.print(f"[red]model {deployment.model_version} has no reference profile (built before monitoring)[/red]")
        raise typer.Exit(1)
    log = log or WorkDir(workdir).request_log
    now = time.time()
    since = now - retention_days * 86400
    requests = RequestLog.read(log, profile.model_version, since) if log.exists() else RequestLog.read_none()
    healths = analyse(profile, requests)
    changes = WorkDir(workdir).catalog_changes
    added = sum(c.action == "add" for c in latest_changes(ChangeLog(str(changes))).values()) if changes.exists() else 0
    events = WorkDir(workdir).event_log  # what `fashionrec serve`'s shoppers were shown and clicked
    bad_events = SkippedLines()
    feedback: list[FeedbackEvent] = read_events(str(events), bad_events, since) if events.exists() else []
    engagement = engagement_drop(feedback, profile.model_version, now) if feedback else None
    skipped = {"request_log": requests.skipped, "event_log": bad_events}
    decision = decide_retraining(healths, added, profile.catalogue_size, engagement, skipped)
    report = write_report(profile, requests, healths, decision, out or WorkDir(workdir).monitoring)
    verdict = "[bold red]retrain[/bold red]" if decision.retrain else "[green]no retraining needed[/green]"
    console.print(f"{len(requests.top1)} logged queries of model {profile.model_version}, {len(healths)} windows: {verdict}")
    for reason in decision.reasons:
        console.print(f"  - {reason}", markup=False)
    console.print(f"report: {report}")
    if retrain and decision.retrain and catalog is not None:
        from fashionrec.local.pipeline_runner import run_local
        from fashionrec.local.retraining import RetrainingHeld, retraining_slot

        try:
            with retraining_slot(workdir, cooldown_hours * 3600):
                console.rule("retraining: the gate and the canary decide what reaches production")
                run = run_local(catalog, workdir, log_file=WorkDir(workdir).pipeline_log)
        except RetrainingHeld as held:
            console.print(f"no retraining run: {held}")
            return
        outcome = "promoted" if run.promoted else "gated out or rolled back: production untouched"
        console.print(f"model {run.deployment.model_version}: {outcome}")


@app.command()
def query(
    images: Annotated[list[Path] | None, typer.Argument(help="Image files to find similar products for.")] = None,
    item_id: Annotated[list[int] | None, typer.Option("--item-id", help="Catalogue item id(s) instead of images.")] = None,
    url: Annotated[str, typer.Option(help="Transformer base URL (printed by `fashionrec serve`).")] = "http://127.0.0.1:8080",
    top_k: Annotated[int, typer.Option(help="Results per query.")] = DEFAULT_TOP_K,
) -> None:
    """Ask the transformer for the most similar products (KServe v2 protocol)."""
    from fashionrec.serving.client import QueryError, image_request, infer, item_request, parse_hits

    if bool(images) == bool(item_id):
        raise typer.BadParameter("give image files or --item-id, not both and not neither")
    body = image_request([p.read_bytes() for p in images or []], top_k) if images else item_request(list(item_id or []), top_k)
    labels = [str(p) for p in images] if images else [f"item {i}" for i in item_id or []]
    try:
        response = infer(url, body)
    except QueryError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    for label, hits in zip(labels, parse_hits(response), strict=True):
        print_hits(f"more like {label} (model {response.get('model_version')})", hits)


@app.command()
def experiment(
    version: Annotated[int, typer.Argument(help="The registry version (`fashionrec model list`) to try against production.")],
    workdir: Workdir = DEFAULT_WORKDIR,
    registry: RegistryOption = None,
    share: Annotated[float, typer.Option(help="Share of the traffic the candidate answers.")] = 0.5,
    max_answers: Annotated[int, typer.Option(help="Stop undecided after this many answers shown per version.")] = 5000,
    max_minutes: Annotated[float, typer.Option(help="Stop undecided after this long.")] = 60.0,
    poll_seconds: Annotated[float, typer.Option(help="How often the engagement counters are read and judged.")] = 10.0,
    alpha: Annotated[float, typer.Option(help="False-win rate of the sequential test, however often it looks.")] = 0.05,
    min_answers: Annotated[int, typer.Option(help="Answers per version before any decision.")] = 300,
    shoppers: Annotated[
        int, typer.Option(help="Simulated shoppers' answers between looks (0: the traffic of real shoppers only).")
    ] = 0,
    catalog: Annotated[Path | None, typer.Option(help="The catalogue the simulated shoppers shop from.")] = None,
    promote: Annotated[bool, typer.Option(help="Promote the candidate if it wins (the registry alias too).")] = False,
) -> None:
    """A/B test VERSION against the production model on the running `fashionrec serve`: the candidate answers a fixed
    share, shoppers' clicks decide (a sequential test that may stop early), an HTML report says by how much."""
    from fashionrec.deploy.experiment import ExperimentSettings
    from fashionrec.deploy.local_target import LocalTarget
    from fashionrec.engagement.sequential import SequentialPolicy
    from fashionrec.local.deployment import deployment_of
    from fashionrec.local.shopping import experiment_with_shoppers

    target = LocalTarget(running_serving(workdir))  # first: without servers there is nothing to experiment on
    registered = open_registry(registry, workdir)
    model_version = registered.get(version).model_version
    settings = ExperimentSettings(
        share, max_answers, max_minutes * 60, poll_seconds, SequentialPolicy(alpha=alpha, min_answers=min_answers)
    )
    console.print(f"experiment: {model_version} answers {share:.0%} of the traffic beside {target.stable_version()}")
    result = experiment_with_shoppers(
        target, deployment_of(workdir, model_version), catalog or WorkDir(workdir).catalog, settings, shoppers, promote
    )
    if result.promoted:
        registered.promote(version)
    report = WorkDir(workdir).experiments / f"{model_version}.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(result.html(), encoding="utf-8")
    final = result.final
    console.print(final.summary if final is not None else "no look was taken")
    for reason in result.reasons:
        console.print(f"- {reason}")
    console.print(f"report: {report}")


@app.command()
def demo(
    workdir: Workdir = Path("work/demo"),
    items_per_type: Annotated[int, typer.Option(help="Size of the generated catalogue per article type.")] = 40,
    epochs: int = 8,
    monitoring: Annotated[
        bool, typer.Option(help="Add the monitoring loop: a shifted query stream raises drift, then a retraining run.")
    ] = False,
    shoppers: Annotated[
        bool,
        typer.Option(help="Add simulated shoppers: engagement per version, an experiment against a weak model, a drop."),
    ] = False,
) -> None:
    """The whole system end to end on a generated catalogue: synth -> pipeline (kfp.local) -> serve -> query -> a
    product added live; with --monitoring, drift on a shifted stream and a retraining run too."""
    from fashionrec.local.demo import run_demo

    run_demo(workdir, items_per_type=items_per_type, epochs=epochs, monitoring=monitoring, shoppers=shoppers)
