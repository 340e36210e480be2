"""The real chain on loopback: TorchServe (JVM + Python worker) serving the .mar, and the FAISS transformer under
kserve.ModelServer, started exactly as `fashionrec serve` starts them."""

import base64
import concurrent.futures
from pathlib import Path

import httpx
import numpy as np
import pytest

from fashionrec.client import QueryError, image_request, infer, item_request, parse_hits
from fashionrec.config import EMBEDDING_DIM, MODEL_NAME
from fashionrec.index import ItemIndex
from fashionrec.serving import serve_locally

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def servers(stages, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with serve_locally(stages.deployment, tmp_path_factory.mktemp("serve")) as running:
        yield running


def images(catalog: Path, *ids: int) -> list[bytes]:
    return [(catalog / "images" / f"{i}.jpg").read_bytes() for i in ids]


def test_v2_query_returns_the_querys_own_item_first(servers, tiny_catalog: Path, stages) -> None:  # type: ignore[no-untyped-def]
    _, transformer = servers
    response = infer(transformer.url, image_request(images(tiny_catalog, 10003, 10030, 10059), top_k=5))
    assert response["model_version"] == ItemIndex.load(stages.index_dir).meta.model_version
    hits = parse_hits(response)
    assert [h[0].item_id for h in hits] == [10003, 10030, 10059]
    assert all(len(h) == 5 for h in hits)
    assert hits[0][0].attributes["productDisplayName"]


def test_item_id_query_reads_feast(servers) -> None:  # type: ignore[no-untyped-def]
    _, transformer = servers
    hits = parse_hits(infer(transformer.url, item_request([10010], top_k=3)))[0]
    assert len(hits) == 3 and 10010 not in [h.item_id for h in hits]


def test_not_an_image_gets_a_4xx_with_a_message_and_serving_goes_on(servers, tiny_catalog: Path) -> None:  # type: ignore[no-untyped-def]
    predictor, transformer = servers
    with pytest.raises(QueryError) as error:
        infer(transformer.url, image_request([b"%PDF-1.4 this is a pdf, not a photo"]))
    assert error.value.status == 400 and "not a recognised image format" in str(error.value)
    # TorchServe itself answers a bad image with a 400 of its own, not a 5xx.
    direct = httpx.post(
        f"{predictor.inference_url}/v2/models/{MODEL_NAME}/infer",
        json={"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(b"junk").decode()]}]},
    )
    assert direct.status_code == 400 and "image 0" in direct.text
    assert parse_hits(infer(transformer.url, image_request(images(tiny_catalog, 10001))))[0][0].item_id == 10001


def test_torchserve_embeds_a_batch_over_v2(servers, tiny_catalog: Path) -> None:  # type: ignore[no-untyped-def]
    predictor, _ = servers
    data = [base64.b64encode(b).decode() for b in images(tiny_catalog, 10000, 10001, 10002)]
    response = httpx.post(
        f"{predictor.inference_url}/v2/models/{MODEL_NAME}/infer",
        json={"inputs": [{"name": "image", "datatype": "BYTES", "shape": [3], "data": data}]},
        timeout=30,
    )
    assert response.status_code == 200
    output = response.json()["outputs"][0]
    assert output["name"] == "embedding" and output["shape"] == [3, EMBEDDING_DIM]
    assert np.allclose(np.linalg.norm(np.asarray(output["data"]).reshape(3, -1), axis=1), 1, atol=1e-4)


def test_concurrent_queries_all_succeed(servers, tiny_catalog: Path) -> None:  # type: ignore[no-untyped-def]
    _, transformer = servers
    ids = list(range(10000, 10016))
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(
                lambda i: parse_hits(infer(transformer.url, image_request(images(tiny_catalog, i), top_k=1)))[0][0].item_id, ids
            )
        )
    assert results == ids


def test_management_api_is_on_loopback_only(servers) -> None:  # type: ignore[no-untyped-def]
    predictor, _ = servers
    assert predictor.management_url.startswith("http://127.0.0.1:")
    config = (predictor.work_dir / "config.properties").read_text()
    assert f"management_address=http://127.0.0.1:{predictor.management_port}" in config


def test_servers_start_from_a_relative_work_dir(stages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    from fashionrec.serving import LocalTorchServe

    predictor = LocalTorchServe(stages.model_store, Path("relative") / "torchserve")
    try:
        predictor.start()
        assert predictor.work_dir.is_absolute() and (tmp_path / "relative" / "torchserve" / "config.properties").is_file()
    finally:
        predictor.stop()
