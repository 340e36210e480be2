"""The model registry and the artifact store as a cluster has them: a real MLflow tracking server, and releases on an
S3-compatible server (moto's), through the same code paths a team's s3:// or KFP's minio:// takes, including a
network fault in the middle of publishing a release. `make test-tools` installs both servers into .tools/."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fashionrec.config import LOOPBACK
from fashionrec.local.cluster_servers import LocalS3Server, running_mlflow, running_s3
from fashionrec.local.faults import CuttableProxy
from fashionrec.local.stages import StageOutputs
from fashionrec.serving.release import RELEASE_FILE, fetch_serving, publish, read_release
from fashionrec.storage import compact_log, read_log_lines, storage, write_log_lines
from fashionrec.training.registry import MlflowRegistry, production_model_dir
from tests.deploy.release_fakes import fake_deployment

pytestmark = pytest.mark.integration
BUCKET = "fashionrec-test"


def test_the_registry_on_a_real_tracking_server(stages: StageOutputs, tmp_path: Path) -> None:
    """Register, promote, resolve production's model (what the gate downloads) and roll back, over HTTP."""
    card = json.loads((stages.model_dir / "model.json").read_text())
    with running_mlflow(tmp_path / "mlflow") as server:
        registry = MlflowRegistry(server.url)
        first = registry.log_and_register({"model": stages.model_dir}, {"epochs": 10}, {"precision_at_5": 0.61}, card)
        second = registry.log_and_register({"model": stages.model_dir}, {"epochs": 12}, {"precision_at_5": 0.64}, card)
        assert registry.production() is None
        registry.promote(first.version)
        registry.promote(second.version)
        production = registry.production()
        assert production is not None and production.version == second.version and production.params["epochs"] == "12"
        downloaded = production_model_dir(registry)  # through the server's artifact proxy, as the gate does
        assert downloaded is not None and json.loads((downloaded / "model.json").read_text()) == card
        registry.rollback()
        rolled_back = MlflowRegistry(server.url).production()  # a second client sees the same alias
        assert rolled_back is not None and rolled_back.version == first.version


@pytest.fixture()
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalS3Server]:
    import s3fs

    with running_s3(tmp_path / "s3") as server:
        # what the pipeline's pods get from the storage Secret and the overlay's endpoint
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        s3fs.S3FileSystem.clear_instance_cache()  # a filesystem made for another test's endpoint
        fs, _ = storage(f"s3://{BUCKET}")
        fs.mkdir(BUCKET)
        yield server
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.parametrize("scheme", ["s3", "minio"])
def test_releases_are_published_once_and_fetched_back_from_an_s3_api(s3: LocalS3Server, tmp_path: Path, scheme: str) -> None:
    root = f"{scheme}://{BUCKET}/fashionrec/releases"
    first = publish(fake_deployment(tmp_path / "runs", "aaa111"), root)
    second = publish(fake_deployment(tmp_path / "runs", "bbb222"), root, first)
    assert read_release(root, "aaa111") == first and second.previous_version == "aaa111"
    fs, prefix = storage(second.model_store_uri)
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{prefix}/model-store")) == ["fashionrec-aaa111.mar", "fashionrec.mar"]
    fetched = fetch_serving(root, "bbb222", "index", tmp_path / "fetched")
    assert (fetched / "placeholder").read_text() == "bbb222"
    assert publish(fake_deployment(tmp_path / "again", "bbb222"), root, first) == second  # never overwritten


def test_a_network_fault_mid_publish_leaves_no_release_and_the_retry_completes_it(
    s3: LocalS3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    proxy = CuttableProxy(s3.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{LOOPBACK}:{proxy.port}")
    s3fs.S3FileSystem.clear_instance_cache()
    root = f"s3://{BUCKET}/fashionrec/releases"
    artifacts = fake_deployment(tmp_path / "runs", "ccc333")
    proxy.cut_after_puts = 2  # the network goes after two files of the release
    with pytest.raises(Exception):  # noqa: B017 (whatever the client raises once its retries are spent)
        publish(artifacts, root)
    assert proxy.puts > 2
    proxy.restore()
    s3fs.S3FileSystem.clear_instance_cache()
    assert read_release(root, "ccc333") is None  # half a release is no release: release.json is written last
    fs, prefix = storage(f"{root}/ccc333")
    assert fs.ls(prefix) and not fs.exists(f"{prefix}/{RELEASE_FILE}")  # what did arrive is there
    release = publish(artifacts, root)  # the step's retry replaces the partial parts and completes it
    assert read_release(root, "ccc333") == release
    assert (fetch_serving(root, "ccc333", "feature_repo", tmp_path / "fetched") / "placeholder").read_text() == "ccc333"


def test_a_log_read_twice_in_one_process_sees_the_parts_written_in_between(s3: LocalS3Server) -> None:
    """s3fs caches a folder's listing for good: a long-lived reader (a test waiting for a transformer's flush, a
    loop reading the request log) must still see every part written since its last read."""
    log = f"s3://{BUCKET}/requests"
    write_log_lines(log, ['{"n": 1}'])
    assert list(read_log_lines(log)) == ['{"n": 1}']
    another_replica = f"from fashionrec.storage import write_log_lines; write_log_lines({log!r}, ['{{\"n\": 2}}'])"
    subprocess.run([sys.executable, "-c", another_replica], check=True)  # its flush: a new part, by another client
    assert list(read_log_lines(log)) == ['{"n": 1}', '{"n": 2}']
    assert compact_log(log, now=time.time() + 3 * 86400).merged == 2  # compaction lists afresh too
