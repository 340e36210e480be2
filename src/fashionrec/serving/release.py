"""Releases: every promoted model version published once under ``<root>/<model_version>/`` of the model storage
(a local folder, or gs://, s3://, minio:// through fsspec), never overwritten:

    <root>/<model_version>/model_store/   the predictor's storageUri: config/config.properties + model-store/
                                          fashionrec.mar (this version) and fashionrec-<previous>.mar (production's),
                                          both served, each under its own name (predictor_model_name)
    <root>/<model_version>/serving/       the transformer's STORAGE_URI: index/ + feature_repo/
    <root>/<model_version>/release.json   written last: the release is complete

A predictor of this release also serves the production version, so during a rollout every transformer, old or new,
finds the encoder of its own index in every predictor pod.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from fashionrec.config import (
    MAR_FILE,
    MODEL_NAME,
    MODEL_STORE_DIR,
    SNAPSHOT_FEATURE_REPO_DIR,
    SNAPSHOT_INDEX_DIR,
    TS_CONFIG_FILE,
)
from fashionrec.serving.torchserve import TorchServeSettings, mar_version, torchserve_properties
from fashionrec.storage import redact_urls, storage

RELEASE_FILE = "release.json"
MODEL_STORE = "model_store"
SERVING = "serving"


@dataclass(frozen=True)
class Deployment:
    """Where one trained model's serving artifacts are: the package, index and features stages' outputs."""

    model_store: Path
    index_dir: Path
    feature_repo: Path

    @property
    def model_version(self) -> str:
        """The version inside its .mar (the trained model's model_version)."""
        return mar_version(self.model_store / MODEL_STORE_DIR / MAR_FILE)


@dataclass(frozen=True)
class Release:
    root: str  # the storage root all releases live under
    model_version: str
    previous_version: str | None  # the production version whose encoder the model store also holds
    created: str

    @property
    def prefix(self) -> str:
        return release_prefix(self.root, self.model_version)

    @property
    def model_store_uri(self) -> str:
        return f"{self.prefix}/{MODEL_STORE}"

    @property
    def serving_uri(self) -> str:
        return f"{self.prefix}/{SERVING}"

    def deployment(self) -> Deployment:
        """Its artifacts as local paths (a local storage root only)."""
        serving = Path(self.serving_uri)
        return Deployment(Path(self.model_store_uri), serving / SNAPSHOT_INDEX_DIR, serving / SNAPSHOT_FEATURE_REPO_DIR)


def release_prefix(root: str, model_version: str) -> str:
    return f"{root.rstrip('/')}/{model_version}"


def fetch_serving(releases_uri: str, model_version: str, part: str, out_dir: Path) -> Path:
    """One folder of a published release's serving/ (``index/reference``, ``feature_repo``), copied into ``out_dir``."""
    release = read_release(releases_uri, model_version)
    if release is None:
        raise FileNotFoundError(f"model version {model_version} has no release under {redact_urls(releases_uri)}")
    fs, root = storage(release.serving_uri)
    fs.get(f"{root}/{part}/", str(out_dir), recursive=True)
    return out_dir


def kserve_uri(uri: str) -> str:
    """The URI as KServe's storage initializer takes it (it reads MinIO through s3:// and the storage Secret)."""
    return "s3://" + uri.removeprefix("minio://") if uri.startswith("minio://") else uri


def read_release(root: str, model_version: str) -> Release | None:
    fs, path = storage(f"{release_prefix(root, model_version)}/{RELEASE_FILE}")
    if not fs.exists(path):
        return None
    return Release(**json.loads(fs.cat_file(path)))


def _stage_model_store(new_store: Path, previous_archive: Path | None, staging: Path, settings: TorchServeSettings) -> None:
    """The release's model store: this version's .mar, production's beside it, and a config serving both."""
    store = staging / MODEL_STORE
    (store / MODEL_STORE_DIR).mkdir(parents=True)
    shutil.copy2(new_store / MODEL_STORE_DIR / MAR_FILE, store / MODEL_STORE_DIR / MAR_FILE)
    version = mar_version(store / MODEL_STORE_DIR / MAR_FILE)
    archives = {version: MAR_FILE}
    if previous_archive is not None:
        previous = mar_version(previous_archive)
        if previous != version:
            archives[previous] = f"{MODEL_NAME}-{previous}.mar"
            shutil.copy2(previous_archive, store / MODEL_STORE_DIR / archives[previous])
    (store / TS_CONFIG_FILE).parent.mkdir(parents=True)
    (store / TS_CONFIG_FILE).write_text(torchserve_properties(settings, archives), encoding="utf-8")


def publish(
    artifacts: Deployment, root: str, previous: Release | None = None, settings: TorchServeSettings | None = None
) -> Release:
    """Publish the pipeline's outputs as the release of their model version, its model store also serving
    ``previous`` (production's release). A complete release of that version already there is reused as it is (a
    retried step); a release is never overwritten."""
    version = artifacts.model_version
    if (existing := read_release(root, version)) is not None:
        return existing
    fs, prefix = storage(release_prefix(root, version))
    beside = previous if previous is not None and previous.model_version != version else None
    with tempfile.TemporaryDirectory(prefix="fashionrec-release-") as tmp:
        staging = Path(tmp)
        previous_archive = None
        if beside is not None:
            previous_fs, previous_path = storage(f"{beside.model_store_uri}/{MODEL_STORE_DIR}/{MAR_FILE}")
            previous_archive = staging / "previous.mar"
            previous_fs.get(previous_path, str(previous_archive))
        _stage_model_store(artifacts.model_store, previous_archive, staging, settings or TorchServeSettings())
        shutil.copytree(artifacts.index_dir, staging / SERVING / SNAPSHOT_INDEX_DIR)
        shutil.copytree(artifacts.feature_repo, staging / SERVING / SNAPSHOT_FEATURE_REPO_DIR)
        for part in (MODEL_STORE, SERVING):  # a partial upload without release.json is replaced by the retry
            if fs.exists(f"{prefix}/{part}"):
                fs.rm(f"{prefix}/{part}", recursive=True)
            fs.put(str(staging / part), f"{prefix}/{part}", recursive=True)
        release = Release(root, version, beside.model_version if beside else None, datetime.now(UTC).isoformat())
        fs.pipe_file(f"{prefix}/{RELEASE_FILE}", json.dumps(asdict(release), indent=2).encode())
    return release
