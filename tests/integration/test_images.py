"""The images as a cluster runs them: both built from the Dockerfile (buildah here: no Docker engine runs on these
machines), every step of the training pipeline run inside the pipeline image with exactly the command and executor
input that kfp.local builds from the compiled component (its DockerRunner, with buildah starting the container),
artifacts passed between steps as files, against a real MLflow tracking server and releases on an S3 API; then the
release served by the transformer image beside the KServe-hosted encoder from the pipeline image, both as uid 1000,
answering v2 on loopback. Whatever the Dockerfile, the package or the YAML get wrong for a cluster fails here."""

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from fashionrec.config import MODEL_NAME
from fashionrec.images.build import ImageNames, build_images
from fashionrec.images.containers import CONTAINER_USER, ContainerSettings, kfp_tasks_in_images, serving_in_image
from fashionrec.local.cluster_servers import LocalMlflowServer, LocalS3Server, running_mlflow, running_s3
from fashionrec.local.pipeline_runner import run_pipeline
from fashionrec.params import PipelineSettings, TrainConfig, plain_values
from fashionrec.serving.client import image_request, parse_hits
from fashionrec.serving.processes import LocalKServeEncoder, LocalTransformer
from fashionrec.serving.release import read_release
from fashionrec.storage import storage
from fashionrec.training.registry import MlflowRegistry

pytestmark = pytest.mark.integration
BUCKET = "fashionrec-images"
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
    env: dict[str, str]  # what the storage Secret gives every pod


@pytest.fixture()
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClusterStores]:
    import s3fs

    with running_s3(tmp_path / "s3") as s3, running_mlflow(tmp_path / "mlflow") as mlflow:
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
        yield ClusterStores(s3, mlflow, env)


def owned_by_container_user(path: Path) -> Path:
    """A folder the containers' uid 1000 writes into (a pod's volume is writable by its user)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, UID, GID)
    return path


def test_the_training_pipeline_runs_step_by_step_in_its_image_and_the_transformer_image_serves_its_release(
    images: dict[str, Any], stores: ClusterStores, tiny_catalog: Path, tmp_path: Path
) -> None:
    pipeline_root = owned_by_container_user(tmp_path / "pipeline_root")
    catalog = shutil.copytree(tiny_catalog, tmp_path / "catalog")
    catalog.chmod(0o755)  # readable by the containers' user, as a bucket's objects are by the pod's
    releases = f"s3://{BUCKET}/releases"
    settings = PipelineSettings(
        min_precision_at_5=0.0,  # one epoch on the tiny catalogue is near chance; this test is about where it runs
        registry_uri=stores.mlflow.url,
        deploy_target="none",  # publish only: no Kubernetes API here (tests/deploy covers the kserve:// target)
        releases_uri=releases,
    )
    arguments = {"catalog_uri": str(catalog)} | plain_values(TrainConfig(epochs=1, batch_size=16), pipeline=True)
    containers = ContainerSettings(read_only_mounts=(catalog,), env=stores.env)
    with kfp_tasks_in_images(containers) as runner:
        task = run_pipeline("training_pipeline", arguments | plain_values(settings, pipeline=True), pipeline_root, runner)
    assert task.outputs["gate_passed"] is True

    # Provenance: the model card and the registry name the image and the commit it was built from.
    model_store = Path(task.outputs["model_store"].path)
    registered = MlflowRegistry(stores.mlflow.url).versions()
    assert len(registered) == 1 and registered[0].git_commit == images["git_commit"]
    model_cards = list(pipeline_root.rglob("model.json"))
    assert model_cards, "the train step wrote no model card"
    build = json.loads(model_cards[0].read_text())["build"]
    assert build["image"] == images["images"]["pipeline"]["name"] and build["git_commit"] == images["git_commit"]
    assert {"torch", "faiss-cpu", "feast", "fashionrec"} <= set(build["packages"])

    # The release on S3, fetched as KServe's storage initializer does, served from the images.
    model_version = registered[0].model_version
    release = read_release(releases, model_version)
    assert release is not None and model_store.is_dir()
    served = tmp_path / "mnt" / "models"
    fs, root = storage(release.prefix)
    fs.get(f"{root}/", str(served), recursive=True)
    work = owned_by_container_user(tmp_path / "servers")
    mounts = ContainerSettings(mounts=(work,), read_only_mounts=(served,), env=stores.env)
    encoder = LocalKServeEncoder(work / "encoder", model_store_dir=served / "model_store")
    owned_by_container_user(work / "encoder")
    with serving_in_image(encoder, images["images"]["pipeline"]["name"], mounts):
        transformer = LocalTransformer(
            owned_by_container_user(work / "transformer"),
            index_dir=served / "serving" / "index",
            feature_repo=served / "serving" / "feature_repo",
            predictor_host=encoder.predictor_host("v2"),
        )
        with serving_in_image(transformer, images["images"]["transformer"]["name"], mounts):
            photo = sorted((tiny_catalog / "images").glob("*.jpg"))[0]
            answer = httpx.post(
                f"{transformer.url}/v2/models/{MODEL_NAME}/infer", json=image_request([photo.read_bytes()], 5), timeout=60
            )
            assert answer.status_code == 200, answer.text
            hits = parse_hits(answer.json())[0]
            catalogue_ids = {int(p.stem) for p in (tiny_catalog / "images").glob("*.jpg")}
            assert len(hits) == 5 and {hit.item_id for hit in hits} <= catalogue_ids
