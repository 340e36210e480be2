"""The images as a cluster runs them: both built from the Dockerfile (buildah here: no Docker engine runs on these
machines), and the three committed compiled pipelines (pipelines/compiled/*.yaml, what a user submits) run step by
step inside the pipeline image with exactly the image, command and executor input that kfp.local builds from the
YAML (its DockerRunner, with buildah starting the container and the launcher's download of object-storage inputs
done first), artifacts passed between steps as files:

- training, against a real MLflow tracking server, releases on an S3 API and a shared Redis online store, to a
  release served by the transformer image beside the KServe-hosted encoder from the pipeline image (uid 1000, v2 on
  loopback), the transformer writing its request log to S3 and applying the catalogue change log from S3;
- catalogue update: new products imported from S3, encoded by the served encoder that the InferenceService names
  (read through the kubernetes client from a kubeconfig, against a stand-in of the API server: none runs here),
  written to Redis and found by the served transformer within a poll;
- both servers as their manifests run them: uid 1000, and nothing written into the container's root outside the
  volumes the manifest mounts writable (readOnlyRootFilesystem: buildah run has no such switch, so the container's
  writable layer is read after it stops);
- monitoring: the request log imported from S3 and read, the growth the change log shows deciding a retraining run,
  submitted by the trigger to a recording stand-in of the KFP REST API with the training pipeline the image carries.

Whatever the Dockerfile, the package or the YAML get wrong for a cluster fails here."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from client_load import wait_for
from new_products import flipped_product

from fashionrec.checkout import compiled_pipeline
from fashionrec.config import MODEL_NAME
from fashionrec.data.catalog import STYLES_FILE, write_styles
from fashionrec.deploy.kserve_target import template, with_release
from fashionrec.images.build import BUILDAH_ENV, ImageNames, build_images
from fashionrec.images.containers import (
    CONTAINER_USER,
    ContainerSettings,
    kfp_tasks_in_images,
    new_container,
    remove_container,
    root_writes,
    run_command,
    serving_in_image,
)
from fashionrec.local.cluster_servers import LocalMlflowServer, LocalS3Server, running_mlflow, running_s3
from fashionrec.local.pipeline_runner import run_pipeline
from fashionrec.local.redis import LocalRedis, running_redis
from fashionrec.monitoring.report import RequestLog
from fashionrec.params import PipelineSettings, TrainConfig, plain_values
from fashionrec.serving.client import image_request, item_request, parse_hits
from fashionrec.serving.processes import LocalKServeEncoder, LocalTransformer
from fashionrec.serving.release import Release, read_release
from fashionrec.storage import storage
from fashionrec.training.registry import MlflowRegistry
from tests.deploy.kube_api_stand_in import KubeApiStandIn

sys.path.insert(0, str(Path(__file__).parents[1] / "kubeflow"))  # the recorder lives with the KFP client's tests
from kfp_api_recorder import API, KfpApiRecorder

pytestmark = pytest.mark.integration
BUCKET = "fashionrec-images"
NAMESPACE = "team-a"
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "base"
TEMPLATE = MANIFESTS / "inferenceservice.yaml"
RUNTIME = MANIFESTS / "servingruntime-kserve-encoder.yaml"  # the KServe-hosted encoder's container
UID, GID = (int(part) for part in CONTAINER_USER.split(":"))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both images under the default names (what the components and manifests name), built or taken from the
    layer cache."""
    return build_images(ImageNames(), report=tmp_path_factory.mktemp("images") / "images.json")


@dataclass
class ClusterStores:
    s3: LocalS3Server
    mlflow: LocalMlflowServer
    redis: LocalRedis
    env: dict[str, str]  # what the storage Secret gives every pod


@pytest.fixture()
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClusterStores]:
    import s3fs

    with (
        running_s3(tmp_path / "s3") as s3,
        running_mlflow(tmp_path / "mlflow") as mlflow,
        running_redis(tmp_path / "redis") as redis,
    ):
        env = {
            "AWS_ENDPOINT_URL": s3.endpoint,
            "AWS_ACCESS_KEY_ID": "test-key",
            "AWS_SECRET_ACCESS_KEY": "test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        s3fs.S3FileSystem.clear_instance_cache()
        fs, _ = storage(f"s3://{BUCKET}")
        fs.mkdir(BUCKET)
        yield ClusterStores(s3, mlflow, redis, env)


def owned_by_container_user(path: Path) -> Path:
    """A folder the containers' uid 1000 writes into (a pod's volume is writable by its user)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, UID, GID)
    return path


def readable_copy(source: Path, target: Path) -> Path:
    """A copy the containers' user can read, as a bucket's objects are by the pod's."""
    shutil.copytree(source, target)
    target.chmod(0o755)
    return target


def uploaded(local: Path, uri: str) -> str:
    fs, key = storage(uri)
    fs.put(f"{local}/", key, recursive=True)
    return uri


def new_products(catalog: Path, count: int, out: Path) -> Path:
    """``count`` new products (mirrored photos of catalogue items under ids from 90001) as a batch folder."""
    sources = sorted(int(photo.stem) for photo in (catalog / "images").glob("*.jpg"))[:count]
    rows = [flipped_product(catalog, source, 90001 + n, out) for n, source in enumerate(sources)]
    write_styles(pd.DataFrame(rows), out / STYLES_FILE)
    return out


def serving_isvc(release: Release, predictor_url: str) -> dict[str, Any]:
    """The InferenceService as the API server answers it once the release is rolled out: the manifests' template
    pointed at the release, and the predictor's address in its status."""
    isvc = with_release(
        with_release(template(TEMPLATE, NAMESPACE, MODEL_NAME), release, "predictor", None), release, "transformer", None
    )
    isvc["status"] = {"components": {"predictor": {"address": {"url": predictor_url}}}}
    return isvc


def writable_folders(manifest: Path, containers: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> tuple[str, ...]:
    """Where a server's manifest lets it write: its container has readOnlyRootFilesystem, so only the volumes it
    mounts writable."""
    (container,) = containers(yaml.safe_load(manifest.read_text()))
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    return tuple(m["mountPath"] for m in container.get("volumeMounts", []) if not m.get("readOnly"))


def only_file(root: Path, name: str) -> Path:
    (found,) = [path for path in root.rglob(name) if path.is_file()]
    return found


def test_the_three_pipelines_run_step_by_step_in_the_pipeline_image_and_the_transformer_image_serves_their_work(
    images: dict[str, Any], stores: ClusterStores, tiny_catalog: Path, tmp_path: Path
) -> None:
    pipeline_image = images["images"]["pipeline"]["name"]
    pipeline_root = owned_by_container_user(tmp_path / "pipeline_root")
    catalog = readable_copy(tiny_catalog, tmp_path / "catalog")
    releases, changes, requests = (f"s3://{BUCKET}/{name}" for name in ("releases", "changes", "requests"))
    kube = tmp_path / "kube"
    kube.mkdir(mode=0o755)
    tasks = ContainerSettings(read_only_mounts=(catalog, kube), env={**stores.env, "KUBECONFIG": str(kube / "config")})

    # 1. Training, every step in the pipeline image.
    settings = PipelineSettings(
        min_precision_at_5=0.0,  # one epoch on the tiny catalogue is near chance; this test is about where it runs
        registry_uri=stores.mlflow.url,
        deploy_target="none",  # publish only: tests/deploy covers the kserve:// target's writes
        releases_uri=releases,
        online_store=stores.redis.url,  # shared: what live catalogue updates need
    )
    arguments = {"catalog_uri": str(catalog)} | plain_values(TrainConfig(epochs=1, batch_size=16), pipeline=True)
    with kfp_tasks_in_images(tasks) as runner:
        task = run_pipeline(
            compiled_pipeline("pipelines.training_pipeline"),
            arguments | plain_values(settings, pipeline=True),
            pipeline_root,
            runner,
        )
    assert task.outputs["gate_passed"] is True

    # Provenance: the model card and the registry name the image and the commit it was built from.
    registered = MlflowRegistry(stores.mlflow.url).versions()
    assert len(registered) == 1 and registered[0].git_commit == images["git_commit"]
    build = json.loads(only_file(pipeline_root, "model.json").read_text())["build"]
    assert build["image"] == pipeline_image and build["git_commit"] == images["git_commit"]
    assert {"torch", "faiss-cpu", "feast", "fashionrec"} <= set(build["packages"])

    # The release on S3, fetched as KServe's storage initializer does, served from the images.
    version = registered[0].model_version
    release = read_release(releases, version)
    assert release is not None
    served = tmp_path / "mnt" / "models"
    fs, root = storage(release.prefix)
    fs.get(f"{root}/", str(served), recursive=True)
    work = owned_by_container_user(tmp_path / "servers")
    mounts = ContainerSettings(mounts=(work,), read_only_mounts=(served,), env=stores.env)
    encoder = LocalKServeEncoder(owned_by_container_user(work / "encoder"), model_store_dir=served / "model_store")
    image_queries = 0

    def ask(body: dict[str, Any]) -> httpx.Response:
        nonlocal image_queries
        image_queries += "item_id" not in json.dumps(body)
        return httpx.post(f"{transformer.url}/v2/models/{MODEL_NAME}/infer", json=body, timeout=60)

    encoder_writes = writable_folders(RUNTIME, lambda runtime: runtime["spec"]["containers"])
    transformer_writes = writable_folders(TEMPLATE, lambda isvc: isvc["spec"]["transformer"]["containers"])
    with serving_in_image(encoder, pipeline_image, mounts, read_only_root=encoder_writes):
        transformer = LocalTransformer(
            owned_by_container_user(work / "transformer"),
            index_dir=served / "serving" / "index",
            feature_repo=served / "serving" / "feature_repo",
            predictor_host=encoder.predictor_host("v2"),
            catalog_changes=changes,
            request_log=requests,
            monitor_seconds=1.0,  # the request log is flushed at each live drift test
        )
        transformer_image = images["images"]["transformer"]["name"]
        with serving_in_image(transformer, transformer_image, mounts, read_only_root=transformer_writes):
            photo = sorted((catalog / "images").glob("*.jpg"))[0]
            answer = ask(image_request([photo.read_bytes()], 5))
            assert answer.status_code == 200, answer.text
            hits = parse_hits(answer.json())[0]
            catalogue_ids = {int(p.stem) for p in (catalog / "images").glob("*.jpg")}
            assert len(hits) == 5 and {hit.item_id for hit in hits} <= catalogue_ids

            # 2. A catalogue update in the pipeline image: a fifth more products, encoded by the served encoder.
            added = len(catalogue_ids) // 5 + 1
            batch = new_products(catalog, added, tmp_path / "additions")
            isvc = serving_isvc(release, f"http://{encoder.predictor_host('v2')}")
            with KubeApiStandIn(isvc) as kube_api, kfp_tasks_in_images(tasks) as runner:
                kube_api.write_kubeconfig(kube / "config").chmod(0o644)
                catalogue_update = {
                    "additions_uri": uploaded(batch, f"s3://{BUCKET}/additions"),
                    "releases_uri": releases,
                    "catalog_changes_uri": changes,
                    "serving_target": f"kserve://{NAMESPACE}/{MODEL_NAME}",
                }
                run_pipeline(compiled_pipeline("pipelines.catalog_pipeline"), catalogue_update, pipeline_root, runner)
            assert ("GET", kube_api.handler.path_served, None) in kube_api.handler.seen
            assert ask(item_request([90001], 3)).status_code == 200  # its vector is in the shared store at once
            new_photo = (batch / "images" / "90001.jpg").read_bytes()
            assert wait_for(lambda: parse_hits(ask(image_request([new_photo], 3)).json())[0][0].item_id == 90001, 60)
            # Every image query in the request log on S3 before the servers stop.
            logged = lambda: RequestLog.read(requests)  # noqa: E731
            assert wait_for(lambda: len(logged().top1) == image_queries, 30), (image_queries, logged().model_versions)
            assert set(logged().model_versions) == {version}

    # 3. Monitoring in the pipeline image: the log read, the growth deciding a run the trigger submits.
    with KfpApiRecorder() as kfp_api, kfp_tasks_in_images(tasks) as runner:
        monitoring = {
            "request_log_uri": requests,
            "releases_uri": releases,
            "catalog_uri": str(catalog),
            "model_version": version,
            "kfp_host": kfp_api.url,
            "catalog_changes_uri": changes,
        }
        run_pipeline(compiled_pipeline("pipelines.monitoring_pipeline"), monitoring, pipeline_root, runner)
    decision = only_file(pipeline_root, "monitor-requests/decision").read_text()
    assert decision.startswith("# Retrain") and "catalogue growth" in decision and f"{added} products added" in decision
    report = only_file(pipeline_root, "monitor-requests/report").read_text()
    assert f"{image_queries} logged image queries" in report  # the log the launcher's part downloaded from S3
    (submitted,) = kfp_api.calls_to("POST", f"{API}/runs")
    assert submitted.json()["runtime_config"]["parameters"]["catalog_uri"] == str(catalog)
    (upload,) = [r for r in kfp_api.uploads() if r.headers.get("content-type", "").startswith("multipart/")]
    spec = next(yaml.safe_load_all(upload.multipart()["uploadfile"][1]))
    named = {task["container"]["image"] for task in spec["deploymentSpec"]["executors"].values() if "container" in task}
    assert named == {pipeline_image}  # the training pipeline the image carries names the image itself


def test_a_file_written_into_the_root_outside_the_writable_folders_is_found(images: dict[str, Any]) -> None:
    """What stands in for readOnlyRootFilesystem above: a write into /tmp counts unless /tmp is mounted writable."""
    container = new_container(images["images"]["transformer"]["name"], "root-writes")
    try:
        command = run_command(container, ["sh", "-c", "echo cache > /tmp/cache.txt"], ContainerSettings())
        assert subprocess.run(command, env={**os.environ, **BUILDAH_ENV}, capture_output=True).returncode == 0
        assert root_writes(container, writable=()) == ["tmp/cache.txt"]
        assert root_writes(container, writable=("/tmp",)) == []
    finally:
        remove_container(container)
