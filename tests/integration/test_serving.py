"""The real chain on loopback: TorchServe (JVM + Python worker) serving the .mar, and the FAISS transformer under
kserve.ModelServer, started exactly as `fashionrec serve` starts them."""

import base64
import concurrent.futures
import json
import shutil
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashionrec.config import EMBEDDING_DIM, MAR_FILE, MAX_REQUEST_BYTES, MODEL_NAME, MODEL_STORE_DIR, predictor_model_name
from fashionrec.deploy.local_target import LocalServing, register_encoder, served_versions, unregister_encoder
from fashionrec.local.stages import StageOutputs
from fashionrec.retrieval.index import ItemIndex
from fashionrec.serving.client import QueryError, binary_image_request, image_request, infer, item_request, parse_hits
from fashionrec.serving.processes import LIVE_DIR, LocalTorchServe, LocalTransformer, serve_locally
from fashionrec.serving.torchserve import bearer

pytestmark = pytest.mark.integration
Servers = tuple[LocalTorchServe, LocalTransformer]


@pytest.fixture(scope="module")
def servers(stages: StageOutputs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with serve_locally(stages.deployment, tmp_path_factory.mktemp("serve")) as (predictor, transformer):
        assert isinstance(predictor, LocalTorchServe)  # the default runtime
        yield predictor, transformer


def relabel(mar: Path, out: Path, model_version: str) -> None:
    """A copy of the archive that says it holds another model version (a second release, without training one)."""
    out.parent.mkdir(parents=True)
    with zipfile.ZipFile(mar) as source, zipfile.ZipFile(out, "w") as copy:
        for entry in source.infolist():
            data = source.read(entry)
            if entry.filename == "MAR-INF/MANIFEST.json":
                manifest = json.loads(data)
                manifest["model"]["modelVersion"] = model_version
                data = json.dumps(manifest).encode()
            copy.writestr(entry, data)


def images(catalog: Path, *ids: int) -> list[bytes]:
    return [(catalog / "images" / f"{i}.jpg").read_bytes() for i in ids]


def test_v2_query_returns_the_querys_own_item_first(servers: Servers, tiny_catalog: Path, stages: StageOutputs) -> None:
    _, transformer = servers
    response = infer(transformer.url, image_request(images(tiny_catalog, 10003, 10030, 10059), top_k=5))
    assert response["model_version"] == ItemIndex.load(stages.index_dir).meta.model_version
    hits = parse_hits(response)
    assert [h[0].item_id for h in hits] == [10003, 10030, 10059]
    assert all(len(h) == 5 for h in hits)
    assert hits[0][0].attributes["productDisplayName"]


def test_item_id_query_reads_feast(servers: Servers) -> None:
    _, transformer = servers
    hits = parse_hits(infer(transformer.url, item_request([10010], top_k=3)))[0]
    assert len(hits) == 3 and 10010 not in [h.item_id for h in hits]


def test_not_an_image_gets_a_4xx_with_a_message_and_serving_goes_on(servers: Servers, tiny_catalog: Path) -> None:
    predictor, transformer = servers
    with pytest.raises(QueryError) as error:
        infer(transformer.url, image_request([b"%PDF-1.4 this is a pdf, not a photo"]))
    assert error.value.status == 400 and "not a recognised image format" in str(error.value)
    # TorchServe itself answers a bad image with a 400 of its own, not a 5xx.
    direct = httpx.post(
        f"{predictor.inference_url}/v2/models/{predictor_model_name(predictor.model_version)}/infer",
        json={"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(b"junk").decode()]}]},
        headers=predictor.inference_headers(),
    )
    assert direct.status_code == 400 and "image 0" in direct.text
    assert parse_hits(infer(transformer.url, image_request(images(tiny_catalog, 10001))))[0][0].item_id == 10001


def test_torchserve_embeds_a_batch_over_v2(servers: Servers, tiny_catalog: Path) -> None:
    predictor, _ = servers
    data = [base64.b64encode(b).decode() for b in images(tiny_catalog, 10000, 10001, 10002)]
    response = httpx.post(
        f"{predictor.inference_url}/v2/models/{predictor_model_name(predictor.model_version)}/infer",
        json={"inputs": [{"name": "image", "datatype": "BYTES", "shape": [3], "data": data}]},
        headers=predictor.inference_headers(),
        timeout=30,
    )
    assert response.status_code == 200
    output = response.json()["outputs"][0]
    assert output["name"] == "embedding" and output["shape"] == [3, EMBEDDING_DIM]
    assert np.allclose(np.linalg.norm(np.asarray(output["data"]).reshape(3, -1), axis=1), 1, atol=1e-4)


def test_concurrent_queries_all_succeed(servers: Servers, tiny_catalog: Path) -> None:
    _, transformer = servers
    ids = list(range(10000, 10016))
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(
                lambda i: parse_hits(infer(transformer.url, image_request(images(tiny_catalog, i), top_k=1)))[0][0].item_id, ids
            )
        )
    assert results == ids


def test_management_api_is_on_loopback_only(servers: Servers) -> None:
    predictor, _ = servers
    assert predictor.management_url.startswith("http://127.0.0.1:")
    config = (predictor.work_dir / "config.properties").read_text()
    assert f"management_address=http://127.0.0.1:{predictor.management_port}" in config


def test_the_management_api_wants_its_key_and_registers_archives_of_its_store_only(servers: Servers, tmp_path: Path) -> None:
    """The ShellTorch pattern: a local process registering a .mar from anywhere would run its handler. Without the
    management key nothing is answered; with it, only an archive already in the model store is registered."""
    predictor, transformer = servers
    models = f"{predictor.management_url}/models"
    refused = httpx.get(models, timeout=10)
    assert refused.status_code == 400 and "InvalidKeyException" in refused.text
    assert httpx.get(models, headers=bearer("not-the-key"), timeout=10).status_code == 400
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy2(predictor.live_store / MAR_FILE, elsewhere / "shelltorch.mar")  # a loadable archive, outside the store
    for url in ((elsewhere / "shelltorch.mar").as_uri(), "http://127.0.0.1:9/shelltorch.mar"):
        params = {"url": url, "model_name": "shelltorch", "initial_workers": "1", "synchronous": "true"}
        answer = httpx.post(models, params=params, headers=predictor.management_headers(), timeout=60)
        assert answer.status_code == 404 and "does not match any allowed URL" in answer.text, answer.text
    # Our own path (the hot swap's, fashionrec.deploy.local_target): a release's archive copied into the store and
    # registered by name, with the key; without the key the same registration is refused.
    serving = LocalServing.of(predictor, transformer, predictor.work_dir.parent / LIVE_DIR)
    release = tmp_path / "release"
    relabel(predictor.live_store / MAR_FILE, release / MODEL_STORE_DIR / MAR_FILE, "relabelled")
    params = {"url": MAR_FILE, "model_name": "fashionrec-copy", "initial_workers": "1", "synchronous": "true"}
    assert httpx.post(models, params=params, timeout=60).status_code == 400
    assert register_encoder(serving, release) == "relabelled"
    assert served_versions(serving) == {predictor.model_version, "relabelled"}
    unregister_encoder(serving, "relabelled")
    assert served_versions(serving) == {predictor.model_version}
    # The store's own file:// URL passes allowed_urls as TorchServe parsed it from config.properties (escapes and
    # all); TorchServe then refuses to fetch a file onto itself, and leaves it be.
    inside = {"url": (predictor.live_store / MAR_FILE).as_uri(), "model_name": "inside", "synchronous": "true"}
    answer = httpx.post(models, params=inside, headers=predictor.management_headers(), timeout=60)
    assert "already exists" in answer.text and "does not match" not in answer.text, answer.text
    assert (predictor.live_store / MAR_FILE).is_file()
    # the inference API wants its key too (the transformer reads it from the key file, as the other tests show)
    infer_url = f"{predictor.inference_url}/v2/models/{predictor_model_name(predictor.model_version)}/infer"
    without_key = httpx.post(infer_url, json={"inputs": []}, timeout=10)
    assert without_key.status_code == 400 and "InvalidKeyException" in without_key.text


def test_the_running_transformer_has_loaded_no_torch(servers: Servers) -> None:
    """Measured on the live process: which shared libraries it has mapped (the TorchServe worker has libtorch)."""
    _, transformer = servers
    assert transformer.process is not None and transformer.process.process is not None
    maps = Path(f"/proc/{transformer.process.process.pid}/maps").read_text()
    assert "faiss" in maps  # the check reads the right process: it has FAISS loaded
    assert "libtorch" not in maps and "/torch/" not in maps


def test_servers_start_from_a_relative_work_dir(stages: StageOutputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    from fashionrec.serving.processes import LocalTorchServe

    predictor = LocalTorchServe(stages.model_store, Path("relative") / "torchserve")
    try:
        predictor.start()
        assert predictor.work_dir.is_absolute() and (tmp_path / "relative" / "torchserve" / "config.properties").is_file()
    finally:
        predictor.stop()


_JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF"
_payload_items = st.one_of(
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=64).map(lambda b: base64.b64encode(_JPEG_HEAD + b).decode()),  # truncated JPEG
    st.text(max_size=20),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.none(),
    st.booleans(),
)
_tensors = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["image", "item_id", "colour", ""]),
        "datatype": st.sampled_from(["BYTES", "INT64", "FP32", "INT32", "BOOL", "nonsense"]),
        "shape": st.one_of(st.lists(st.integers(min_value=-2, max_value=70), max_size=3), st.text(max_size=3)),
        "data": st.one_of(st.lists(_payload_items, max_size=70), _payload_items),
    }
)
_bodies = st.one_of(
    st.fixed_dictionaries(
        {"inputs": st.lists(_tensors, max_size=3)},
        optional={
            "parameters": st.dictionaries(st.sampled_from(["top_k", "x"]), _payload_items, max_size=2),
            "id": _payload_items,
        },
    ).map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=200),
)


def test_fuzzed_payloads_get_only_2xx_or_4xx_and_serving_goes_on(servers: Servers, tiny_catalog: Path) -> None:
    _, transformer = servers
    url = f"{transformer.url}/v2/models/{MODEL_NAME}/infer"
    answered: list[int] = []

    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(body=_bodies, binary_header=st.one_of(st.none(), st.integers(min_value=-5, max_value=300)))
    def throw(body: bytes, binary_header: int | None) -> None:
        headers = {"Content-Type": "application/json"}
        if binary_header is not None:
            headers["Inference-Header-Content-Length"] = str(binary_header)
        response = httpx.post(url, content=body, headers=headers, timeout=30)
        answered.append(response.status_code)
        assert response.status_code < 500 or (response.status_code == 503 and "model_version" in response.text), (
            body[:300],
            response.text[:300],
        )
        if response.status_code >= 400:
            assert "error" in response.json()

    throw()
    assert len(answered) == 150 and any(400 <= s < 500 for s in answered)
    # Still serving, and correctly, after the barrage.
    assert parse_hits(infer(transformer.url, image_request(images(tiny_catalog, 10002))))[0][0].item_id == 10002


def test_binary_tensor_request_against_the_real_server(servers: Servers, tiny_catalog: Path) -> None:
    _, transformer = servers
    body, headers = binary_image_request(images(tiny_catalog, 10005, 10006), top_k=2)
    response = httpx.post(f"{transformer.url}/v2/models/{MODEL_NAME}/infer", content=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert [h[0].item_id for h in parse_hits(response.json())] == [10005, 10006]


def test_oversized_request_gets_a_413_and_prometheus_counts_it(servers: Servers) -> None:
    _, transformer = servers
    response = httpx.post(f"{transformer.url}/v2/models/{MODEL_NAME}/infer", content=b"0" * (MAX_REQUEST_BYTES + 10), timeout=60)
    assert response.status_code == 413 and "above the limit" in response.json()["error"]
    metrics = httpx.get(f"{transformer.url}/metrics").text
    assert 'fashionrec_requests_total{status="413"}' in metrics
    assert "fashionrec_feast_seconds_bucket" in metrics and "fashionrec_request_seconds_count" in metrics


def test_torchserve_exposes_prometheus_metrics(servers: Servers) -> None:
    predictor, _ = servers
    metrics = httpx.get(f"http://127.0.0.1:{predictor.metrics_port}/metrics", timeout=10).text
    assert "ts_inference_requests_total" in metrics


@pytest.mark.parametrize("protocol", ["v2", "grpc-v2"])
def test_kserve_hosted_encoder_serves_the_same_answers(
    stages: StageOutputs, tiny_catalog: Path, tmp_path: Path, protocol: str
) -> None:
    """The no-JVM runtime: the same .mar under kserve.ModelServer, reached over v2 REST or v2 gRPC."""
    with serve_locally(stages.deployment, tmp_path, runtime="kserve", protocol=protocol) as (encoder, transformer):
        response = infer(transformer.url, image_request(images(tiny_catalog, 10003, 10040), top_k=3))
        assert [h[0].item_id for h in parse_hits(response)] == [10003, 10040]
        assert response["model_version"] == ItemIndex.load(stages.index_dir).meta.model_version
        encoder_name = predictor_model_name(stages.deployment.model_version)  # each version under its own name
        direct = httpx.post(
            f"{encoder.inference_url}/v2/models/{encoder_name}/infer",
            json={"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["bm90IGFuIGltYWdl"]}]},
        )
        assert direct.status_code == 400 and "image 0" in direct.json()["error"]
        assert httpx.get(f"{encoder.inference_url}/v2/models/{encoder_name}").json()["outputs"][0]["name"] == "embedding"


def png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")  # a few KB, many megapixels
    return buffer.getvalue()


def test_a_heavy_request_does_not_stall_the_health_probe(servers: Servers) -> None:
    """Three 20-megapixel PNGs (small files, seconds to decode) and a broken image: while the transformer decodes,
    its liveness probe still answers, before the heavy request's own 400 comes back."""
    _, transformer = servers
    body = image_request([png(5000, 4000)] * 3 + [b"not an image"])
    finished: dict[str, float] = {}

    def heavy() -> None:
        response = httpx.post(f"{transformer.url}/v2/models/{MODEL_NAME}/infer", json=body, timeout=120)
        finished["heavy"] = time.monotonic()
        finished["status"] = response.status_code
        assert "image 3" in response.json()["error"]

    worker = threading.Thread(target=heavy)
    worker.start()
    time.sleep(0.3)  # the request is in, its images are being decoded
    assert httpx.get(f"{transformer.url}/v2/health/live", timeout=120).status_code == 200
    finished["probe"] = time.monotonic()
    worker.join()
    assert finished["status"] == 400
    assert finished["probe"] < finished["heavy"]  # order, not duration: the probe did not wait for the decoding


def test_too_many_pixels_in_one_request_is_refused_before_decoding(servers: Servers) -> None:
    _, transformer = servers
    body = image_request([png(6000, 6000)] * 2)  # 72 megapixels together, each under the per-image limit
    response = httpx.post(f"{transformer.url}/v2/models/{MODEL_NAME}/infer", json=body, timeout=120)
    assert response.status_code == 400 and "pixels together, above the limit" in response.json()["error"]


def test_a_client_that_sends_the_whole_oversized_body_first_reads_its_413(servers: Servers) -> None:
    """urllib (like many SDKs) writes the whole body before reading: it must get the 413 and its message, not a reset."""
    import urllib.error
    import urllib.request

    _, transformer = servers
    request = urllib.request.Request(
        f"{transformer.url}/v2/models/{MODEL_NAME}/infer",
        data=b"0" * (MAX_REQUEST_BYTES + 4 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=120)
    assert caught.value.code == 413
    assert "above the limit" in json.loads(caught.value.read())["error"]
