"""A hot swap that fails at any step rolls back completely: the previous version keeps answering (no 5xx during or
after), TorchServe, the live link and the transformer are as before, and a later good swap still succeeds. And
`serve --watch` follows the registry's production alias: promote and rollback change what is served."""

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from fashionrec.config import INDEX_META_FILE, MODEL_NAME
from fashionrec.local import hotswap
from fashionrec.local.deployment import Deployment, production_deployment, save_deployment
from fashionrec.local.processes import LIVE_DIR, LocalTorchServe, LocalTransformer, current_bundle, serve_locally
from fashionrec.local.stages import StageOutputs
from fashionrec.serving.client import image_request
from fashionrec.training.card import ModelCard
from fashionrec.training.registry import MlflowRegistry

pytestmark = pytest.mark.integration
Servers = tuple[LocalTorchServe, LocalTransformer, Path]


@pytest.fixture(scope="module")
def servers(stages: StageOutputs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("swap-failures")
    with serve_locally(stages.deployment, root) as (predictor, transformer):
        assert isinstance(predictor, LocalTorchServe)
        yield predictor, transformer, root / LIVE_DIR


def under_load(transformer: LocalTransformer, body: dict[str, object], action: Callable[[], None]) -> list[tuple[int, str]]:
    """Run ``action`` while two clients query; return every (status, model_version or error) they saw."""
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def query() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                response = client.post(f"{transformer.url}/v2/models/{MODEL_NAME}/infer", json=body)
                answers.append((response.status_code, response.json().get("model_version", response.text)))

    workers = [threading.Thread(target=query) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        action()
        stop.wait(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    return answers


def broken_index(second: StageOutputs, tmp_path: Path) -> Deployment:
    index = tmp_path / "broken-index"
    shutil.copytree(second.index_dir, index)
    (index / INDEX_META_FILE).write_text("{ not json")
    return Deployment(second.model_store, index, second.feature_repo)


def other_versions_features(second: StageOutputs, stages: StageOutputs) -> Deployment:
    """The new index with the old model's Feast store: the transformer must refuse to load the pair."""
    return Deployment(second.model_store, second.index_dir, stages.feature_repo)


def assert_rolled_back(servers: Servers, old: str, bundle: str, answers: list[tuple[int, str]]) -> None:
    predictor, transformer, live = servers
    assert answers and all(status == 200 and version == old for status, version in answers), answers[:3]
    assert hotswap.served_versions(predictor) == {old: True}  # the new version is unregistered again
    assert current_bundle(live) == bundle
    ready = httpx.get(f"{transformer.url}/v2/models/{MODEL_NAME}/ready").json()
    assert ready["ready"] is True


@pytest.mark.parametrize("failure", ["bad index.json", "transformer load", "set-default"])
def test_a_failed_swap_rolls_back_and_the_old_version_keeps_answering(
    servers: Servers,
    stages: StageOutputs,
    second_version: StageOutputs,
    tiny_catalog: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    predictor, transformer, live = servers
    old, bundle = hotswap.default_version(predictor), current_bundle(live)
    new = {
        "bad index.json": lambda: broken_index(second_version, tmp_path),
        "transformer load": lambda: other_versions_features(second_version, stages),
        "set-default": lambda: second_version.deployment,
    }[failure]()
    if failure == "set-default":
        real = hotswap.set_default

        def refuse_the_new_version(server: LocalTorchServe, version: str) -> None:
            if version != old:
                raise hotswap.SwapError(f"making {version} the default failed with 500: injected")
            real(server, version)

        monkeypatch.setattr(hotswap, "set_default", refuse_the_new_version)
    body = image_request([(tiny_catalog / "images" / "10004.jpg").read_bytes()], top_k=3)
    errors: list[str] = []

    def failing_swap() -> None:
        with pytest.raises(hotswap.SwapError, match=f"rolled back, still serving {old}") as caught:
            hotswap.swap(predictor, transformer, live, new, drain_s=0.2)
        errors.append(str(caught.value))

    answers = under_load(transformer, body, failing_swap)
    assert errors
    assert_rolled_back(servers, old, bundle, answers)
    # After the failure, the old version keeps answering.
    after = httpx.post(f"{transformer.url}/v2/models/{MODEL_NAME}/infer", json=body, timeout=60)
    assert after.status_code == 200 and after.json()["model_version"] == old


def test_a_retry_reuses_a_version_left_registered_and_watch_follows_the_production_alias(
    servers: Servers, stages: StageOutputs, second_version: StageOutputs, tiny_catalog: Path, tmp_path: Path
) -> None:
    predictor, transformer, live = servers
    first, second = stages.deployment, second_version.deployment
    # A work dir whose registry holds both models, the first in production.
    workdir = tmp_path / "work"
    registry = MlflowRegistry(f"sqlite:///{workdir / 'mlflow.db'}")
    for run in (stages, second_version):
        card = json.loads((run.model_dir / "model.json").read_text())
        registry.log_and_register({"model": run.model_dir}, {"seed": 0}, {"precision_at_5": 0.5}, card)
        save_deployment(run.deployment, workdir, promoted=True)
    registry.promote(1)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"

    def production() -> Deployment:
        return production_deployment(workdir, uri)

    assert hotswap.watch_tick(predictor, transformer, live, production, drain_s=0.2) == ""  # first is served
    # An earlier failed swap could not unregister the second version: the swap reuses it instead of failing.
    hotswap.register_version(predictor, second.model_store)
    registry.promote(2)
    body = image_request([(tiny_catalog / "images" / "10004.jpg").read_bytes()], top_k=3)
    outcomes: list[str] = []
    answers = under_load(
        transformer, body, lambda: outcomes.append(hotswap.watch_tick(predictor, transformer, live, production, 0.2))
    )
    new = ModelCard.load(second_version.model_dir).model_version
    old = ModelCard.load(stages.model_dir).model_version
    assert outcomes == [f"hot-swapped model_version {old} -> {new} with no request dropped"]
    assert all(status == 200 for status, _ in answers) and {v for _, v in answers} <= {old, new}
    assert hotswap.served_versions(predictor) == {new: True}
    # `fashionrec model rollback` moves the alias back; the next tick serves the first model again.
    registry.rollback()
    assert hotswap.watch_tick(predictor, transformer, live, production, drain_s=0.2).endswith(
        f"{new} -> {old} with no request dropped"
    )
    response = httpx.post(f"{transformer.url}/v2/models/{MODEL_NAME}/infer", json=body, timeout=60).json()
    assert response["model_version"] == old and first.model_version == old


def test_a_predictor_ahead_of_the_index_is_refused_not_mixed(
    stages: StageOutputs, second_version: StageOutputs, tiny_catalog: Path, tmp_path: Path
) -> None:
    """A real mismatch: TorchServe answers with a model version the transformer holds no index for (someone made it
    the default by hand). Image queries get a 503 naming the versions and are counted; item queries (Feast) still work."""
    body = image_request([(tiny_catalog / "images" / "10004.jpg").read_bytes()], top_k=3)
    by_id_body = {"inputs": [{"name": "item_id", "datatype": "INT64", "shape": [1], "data": [10004]}]}
    new = ModelCard.load(second_version.model_dir).model_version
    with serve_locally(stages.deployment, tmp_path) as (predictor, transformer):  # it holds the first model's index only
        assert isinstance(predictor, LocalTorchServe)
        infer = f"{transformer.url}/v2/models/{MODEL_NAME}/infer"
        old = hotswap.default_version(predictor)
        hotswap.register_version(predictor, second_version.model_store)
        hotswap.set_default(predictor, new)
        refused = httpx.post(infer, json=body, timeout=60)
        by_id = httpx.post(infer, json=by_id_body, timeout=60)
        metrics = httpx.get(f"{transformer.url}/metrics").text
    assert refused.status_code == 503 and "refusing to mix models" in refused.json()["error"] and new in refused.json()["error"]
    assert 'fashionrec_stale_embeddings_total{source="predictor"} 1.0' in metrics
    assert by_id.status_code == 200 and by_id.json()["model_version"] == old
