"""The transformer's v2 HTTP contract, in-process (FastAPI TestClient). The predictor hop is replaced by the same
EncoderService that TorchServe runs, called directly: a unit test of the transformer layer. The same contract is
tested against real TorchServe + ModelServer processes in tests/integration."""

import itertools
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kserve import ModelServer
from kserve.predictor_config import PredictorConfig
from kserve.protocol.rest.server import RESTServer

from fashionrec.config import ATTRIBUTE_COLUMNS, MAX_BATCH, MAX_REQUEST_BYTES, MODEL_NAME
from fashionrec.imaging import load_batch
from fashionrec.local.stages import StageOutputs
from fashionrec.retrieval.rerank import LabelVote
from fashionrec.serving.client import Steering, binary_image_request, image_request, item_request, parse_hits
from fashionrec.serving.encoder_service import EncoderService
from fashionrec.serving.guard import guard_app
from fashionrec.serving.predictor_client import Embeddings
from fashionrec.serving.transformer import FashionrecTransformer, Query

INFER = f"/v2/models/{MODEL_NAME}/infer"


class InProcessEncoderTransformer(FashionrecTransformer):
    """Stands in for the predictor hop only; counts calls so tests can see whether the predictor was reached."""

    def __init__(self, *args: Any, service: EncoderService, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.service = service
        self.encoder_calls = 0
        self.requested_versions: list[str] = []
        self.served_version: str | None = None  # a predictor that answers with another version than asked for

    async def encode(self, query: Query, model_version: str) -> Embeddings:
        self.encoder_calls += 1
        self.requested_versions.append(model_version)
        vectors = self.service.embed(load_batch(query.images, self.service.image_size))
        return Embeddings(vectors, self.served_version or model_version)


@pytest.fixture(scope="module")
def transformer(stages: StageOutputs, tmp_path_factory: pytest.TempPathFactory) -> InProcessEncoderTransformer:
    extracted = tmp_path_factory.mktemp("mar")
    with zipfile.ZipFile(stages.model_store / "model-store" / f"{MODEL_NAME}.mar") as mar:
        mar.extractall(extracted)
    model = InProcessEncoderTransformer(
        MODEL_NAME, index_dir=stages.index_dir, feature_repo=stages.feature_repo, service=EncoderService.load(extracted)
    )
    model.load()
    return model


@pytest.fixture(scope="module")
def client(transformer: InProcessEncoderTransformer) -> TestClient:
    return client_of(transformer)


def client_of(transformer: InProcessEncoderTransformer) -> TestClient:
    server = ModelServer(
        enable_grpc=False, predictor_config=PredictorConfig(predictor_host="127.0.0.1:9", predictor_protocol="v2")
    )
    server.register_model(transformer)
    rest = RESTServer("kserve.model_server:app", server.dataplane, server.model_repository_extension, http_port=0)
    app = FastAPI()
    guard_app(app, MAX_REQUEST_BYTES)
    rest._register_endpoints(app)
    rest._add_exception_handlers(app)
    return TestClient(app, raise_server_exceptions=False)


def image_of(tiny_catalog: Path, item_id: int) -> bytes:
    return (tiny_catalog / "images" / f"{item_id}.jpg").read_bytes()


def test_image_query_returns_own_item_first_with_attributes(
    client: TestClient, tiny_catalog: Path, transformer: InProcessEncoderTransformer
) -> None:
    response = client.post(INFER, json=image_request([image_of(tiny_catalog, 10000), image_of(tiny_catalog, 10007)], top_k=4))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    body = response.json()
    assert body["model_version"] == transformer.model_version
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["item_id"]["datatype"] == "INT64" and outputs["item_id"]["shape"] == [2, 4]
    assert len(outputs["item_id"]["data"]) == 8 and all(isinstance(i, int) for i in outputs["item_id"]["data"])  # flat
    assert outputs["score"]["datatype"] == "FP32" and outputs["score"]["shape"] == [2, 4]
    assert set(ATTRIBUTE_COLUMNS) <= set(outputs)
    hits = parse_hits(body)
    assert [h[0].item_id for h in hits] == [10000, 10007]
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-4)
    assert all(a.score >= b.score for h in hits for a, b in itertools.pairwise(h))
    assert hits[0][0].attributes["articleType"]


def test_item_query_skips_the_predictor_and_excludes_the_item(
    client: TestClient, transformer: InProcessEncoderTransformer
) -> None:
    before = transformer.encoder_calls
    response = client.post(INFER, json=item_request([10000, 10001], top_k=3))
    assert response.status_code == 200, response.text
    hits = parse_hits(response.json())
    assert transformer.encoder_calls == before
    assert [len(h) for h in hits] == [3, 3]
    assert 10000 not in [h.item_id for h in hits[0]] and 10001 not in [h.item_id for h in hits[1]]


def test_label_vote_reranking_puts_the_voted_type_first(
    stages: StageOutputs, transformer: InProcessEncoderTransformer, client: TestClient
) -> None:
    reranking = InProcessEncoderTransformer(
        MODEL_NAME,
        index_dir=stages.index_dir,
        feature_repo=stages.feature_repo,
        service=transformer.service,
        rerank=LabelVote(voters=5, depth=30, weight=1.0),
    )
    reranking.load()
    queries = [10000, 10003, 10010, 10013, 10020]
    plain = parse_hits(client.post(INFER, json=item_request(queries, top_k=30)).json())
    reranked = parse_hits(client_of(reranking).post(INFER, json=item_request(queries, top_k=8)).json())
    for candidates, answer in zip(plain, reranked, strict=True):
        votes: dict[str, float] = {}
        for hit in candidates[:5]:
            votes[hit.attributes["articleType"]] = votes.get(hit.attributes["articleType"], 0) + hit.score
        total = sum(votes.values())
        adjusted = [-(h.score + votes.get(h.attributes["articleType"], 0) / total) for h in candidates]
        expected = [candidates[n].item_id for n in np.argsort(adjusted, kind="stable")]
        assert [h.item_id for h in answer] == expected[:8]
        assert {h.item_id: h.score for h in answer} == {h.item_id: h.score for h in candidates if h.item_id in expected[:8]}


def test_top_k_above_catalogue_size_pads_with_minus_one(client: TestClient) -> None:
    body = client.post(INFER, json=item_request([10000], top_k=100)).json()
    ids = np.asarray(body["outputs"][0]["data"])
    assert (ids[:59] != -1).all() and (ids[59:] == -1).all()
    assert len(parse_hits(body)[0]) == 59


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (image_request([b"not an image"]), "image 0"),
        (image_request([b""]), "empty"),
        ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["***"]}]}, "base64"),
        ({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [0.5]}]}, "datatype BYTES"),
        ({"inputs": [{"name": "colour", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}, "exactly one input"),
        ({"inputs": []}, "exactly one input"),
        (item_request([123456789]), "unknown item_id"),
        ({"inputs": [{"name": "item_id", "datatype": "FP32", "shape": [1], "data": [1.5]}]}, "INT64"),
        ({**item_request([10000]), "parameters": {"top_k": 0}}, "top_k"),
        ({**item_request([10000]), "parameters": {"top_k": 10_000}}, "top_k"),
        ({**item_request([10000]), "parameters": {"top_k": "many"}}, "top_k"),
        (item_request(list(range(10000, 10000 + MAX_BATCH + 1))), "above the limit"),
    ],
)
def test_bad_requests_get_a_400_with_a_message(
    client: TestClient, transformer: InProcessEncoderTransformer, body: dict[str, Any], message: str
) -> None:
    before = transformer.encoder_calls
    response = client.post(INFER, json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert transformer.encoder_calls == before  # bad input never reaches the predictor


def test_embeddings_of_another_model_version_are_refused(
    client: TestClient, transformer: InProcessEncoderTransformer, tiny_catalog: Path
) -> None:
    transformer.served_version = "another-model"
    try:
        response = client.post(INFER, json=image_request([image_of(tiny_catalog, 10000)]))
    finally:
        transformer.served_version = None
    assert response.status_code == 503
    assert "refusing to mix models" in response.json()["error"]


def test_metadata_and_readiness(client: TestClient) -> None:
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get(f"/v2/models/{MODEL_NAME}/ready").json()["ready"] is True
    metadata = client.get(f"/v2/models/{MODEL_NAME}").json()
    assert {i["name"] for i in metadata["inputs"]} == {"image", "item_id"}
    assert {"item_id", "score", "articleType"} <= {o["name"] for o in metadata["outputs"]}
    assert client.get("/v2/models/unknown/ready").status_code == 404


def test_binary_tensor_extension_gives_the_same_answer_as_base64(client: TestClient, tiny_catalog: Path) -> None:
    images = [image_of(tiny_catalog, 10000), image_of(tiny_catalog, 10031)]
    body, headers = binary_image_request(images, top_k=3)
    binary = client.post(INFER, content=body, headers=headers)
    assert binary.status_code == 200, binary.text
    as_json = client.post(INFER, json=image_request(images, top_k=3)).json()
    assert [[h.item_id for h in row] for row in parse_hits(binary.json())] == [
        [h.item_id for h in row] for row in parse_hits(as_json)
    ]


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (b"{not json", {"Content-Type": "application/json"}, ""),
        (b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 9}}]}',
         {"Inference-Header-Content-Length": "40"}, ""),  # header length pointing into the middle of the JSON
        (b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 4}}]}\x05\x00\x00\x00',
         {"Inference-Header-Content-Length": "103"}, ""),  # element longer than the data
    ],
)  # fmt: skip
def test_malformed_bodies_get_a_4xx(client: TestClient, body: bytes, headers: dict, message: str) -> None:
    response = client.post(INFER, content=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert "error" in response.json()


def test_oversized_body_gets_a_413_before_it_is_read(client: TestClient) -> None:
    response = client.post(INFER, content=b"x" * (MAX_REQUEST_BYTES + 1), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "above the limit" in response.json()["error"]


def test_stale_embeddings_are_counted(client: TestClient, transformer: InProcessEncoderTransformer, tiny_catalog: Path) -> None:
    from prometheus_client import REGISTRY

    def stale() -> float:
        return REGISTRY.get_sample_value("fashionrec_stale_embeddings_total", {"source": "predictor"}) or 0.0

    before = stale()
    transformer.served_version = "another-model"
    try:
        assert client.post(INFER, json=image_request([image_of(tiny_catalog, 10000)])).status_code == 503
    finally:
        transformer.served_version = None
    assert stale() == before + 1
    metrics = client.get("/metrics").text
    assert "fashionrec_faiss_seconds_bucket" in metrics and "fashionrec_predictor_seconds_count" in metrics
    assert 'fashionrec_model_info{dataset_digest="' in metrics and "fashionrec_index_items 60.0" in metrics


def test_a_canary_answers_its_share_of_requests_each_with_its_own_encoder_and_index(
    transformer: InProcessEncoderTransformer, tiny_catalog: Path, client: TestClient
) -> None:
    """Each request is answered by one snapshot: the predictor is asked for that snapshot's encoder, and the answer
    carries its version; per-version counts are what a rollout compares."""
    import dataclasses

    from prometheus_client import REGISTRY

    from fashionrec.retrieval.index import ItemIndex
    from fashionrec.serving.transformer import Routing, ServingSnapshot

    routing = transformer.routing
    assert routing is not None
    stable = routing.stable
    renamed = dataclasses.replace(stable.index.meta, model_version="next-model")
    canary = ServingSnapshot(ItemIndex(stable.index.index, renamed), stable.features)

    def answered(version: str) -> float:
        labels = {"model_version": version, "outcome": "ok"}
        return REGISTRY.get_sample_value("fashionrec_model_requests_total", labels) or 0.0

    try:
        transformer._install(Routing(stable, canary, canary_share=1.0))
        transformer.requested_versions.clear()
        before = answered("next-model")
        answer = client.post(INFER, json=image_request([image_of(tiny_catalog, 10000)])).json()
        assert answer["model_version"] == "next-model" and transformer.requested_versions == ["next-model"]
        assert answered("next-model") == before + 1
        # An item query takes the item's vector from the canary's own index: the canary's version answers.
        assert client.post(INFER, json=item_request([10007])).json()["model_version"] == "next-model"
        # An item the canary's index lacks is read from its store, whose vectors are of the stable version: refused.
        canary.index.remove(np.array([10000]))
        assert client.post(INFER, json=item_request([10000])).status_code == 503
        transformer._install(Routing(stable, canary, canary_share=0.5))
        versions = {client.post(INFER, json=image_request([image_of(tiny_catalog, 10000)])).json()["model_version"]
                    for _ in range(40)}  # fmt: skip
        assert versions == {stable.model_version, "next-model"}
        assert "fashionrec_canary_share 0.5" in client.get("/metrics").text
    finally:
        transformer._install(Routing(stable))
    assert client.post(INFER, json=image_request([image_of(tiny_catalog, 10000)])).json()["model_version"] == stable.model_version


def test_grpc_answer_carries_the_same_tensors_as_rest(transformer: InProcessEncoderTransformer, tiny_catalog: Path) -> None:
    import asyncio

    import orjson
    from kserve import InferRequest, InferResponse
    from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelInferRequest

    grpc_request = ModelInferRequest(model_name=MODEL_NAME, id="grpc-1")
    image = grpc_request.inputs.add(name="image", datatype="BYTES", shape=[2])
    image.contents.bytes_contents.extend([image_of(tiny_catalog, 10000), image_of(tiny_catalog, 10007)])
    grpc_request.parameters["top_k"].int64_param = 3

    async def answer() -> InferResponse:
        return await transformer.predict(await transformer.preprocess(InferRequest.from_grpc(grpc_request)))

    response = asyncio.run(answer())
    over_grpc = InferResponse.from_grpc(response.to_grpc())
    over_rest = orjson.loads(response.to_rest()[0])
    assert over_rest["id"] == over_grpc.id == "grpc-1" and over_rest["model_version"] == transformer.model_version
    rest_outputs = {o["name"]: o for o in over_rest["outputs"]}
    assert set(rest_outputs) == {o.name for o in over_grpc.outputs} == {"item_id", "score", *ATTRIBUTE_COLUMNS}
    for output in over_grpc.outputs:
        assert output.shape == rest_outputs[output.name]["shape"] == [2, 3]
        values = [v.decode() if isinstance(v, bytes) else v for v in output.data]
        assert values == pytest.approx(rest_outputs[output.name]["data"], abs=1e-6)
    assert rest_outputs["item_id"]["data"][0] == 10000  # its own image first


def steered(client: TestClient, body: dict[str, Any]) -> list[list[Any]]:
    response = client.post(INFER, json=body)
    assert response.status_code == 200, response.text
    return parse_hits(response.json())


def test_filters_and_exclusions_hold_for_item_and_image_queries(client: TestClient, tiny_catalog: Path) -> None:
    styles = pd.read_csv(tiny_catalog / "styles.csv", dtype=str).set_index("id")
    gender, kind = str(styles["gender"].iloc[3]), str(styles["articleType"].iloc[5])
    filter_ = {"gender": gender, "articleType": [kind, str(styles["articleType"].iloc[0])]}
    plain = steered(client, item_request([10000], top_k=5))[0]
    excluded = [plain[0].item_id, plain[1].item_id]
    steering = Steering(filter=filter_, exclude_ids=excluded)
    for body in (item_request([10000], 8, steering), image_request([image_of(tiny_catalog, 10000)], 8, steering)):
        hits = steered(client, body)[0]
        assert hits and all(h.attributes["gender"] == gender for h in hits)
        assert all(h.attributes["articleType"] in filter_["articleType"] for h in hits)
        assert not {h.item_id for h in hits} & set(excluded)
        assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    year = int(styles["year"].astype(int).median())
    hits = steered(client, item_request([10000], 20, Steering(filter={"year": {"min": year}})))[0]
    assert hits and all(int(str(styles.loc[str(h.item_id), "year"])) >= year for h in hits)
    # A filter that nothing passes: an empty answer, not an error.
    assert steered(client, item_request([10000], 5, Steering(filter={"gender": "Nobody"}))) == [[]]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"filter": '{"colour": "Red"}'}, "unknown attribute 'colour'"),
        ({"filter": '{"gender": 1}'}, "filter 'gender' takes a string"),
        ({"filter": "not json"}, "filter must be JSON"),
        ({"exclude_ids": '["x"]'}, "exclude_ids takes a list of integer"),
        ({"family_cap": 0}, "family_cap must be an integer"),
        ({"mmr_lambda": 1.5}, "mmr_lambda must be a number between 0 and 1"),
        ({"mmr_lambda": "much"}, "mmr_lambda must be a number"),
    ],
)
def test_bad_steering_gets_a_400_naming_it(client: TestClient, parameters: dict[str, Any], message: str) -> None:
    body = item_request([10000])
    response = client.post(INFER, json={**body, "parameters": {**body["parameters"], **parameters}})
    assert response.status_code == 400 and message in response.json()["error"], response.text


def test_a_family_cap_and_mmr_vary_the_answer(client: TestClient, transformer: InProcessEncoderTransformer) -> None:
    attributes = transformer.routing.stable.index.attributes  # type: ignore[union-attr]
    assert attributes is not None
    queries = [10000, 10003, 10010]
    plain = steered(client, item_request(queries, 6))
    capped = steered(client, item_request(queries, 6, Steering(family_cap=1)))
    for before, after in zip(plain, capped, strict=True):
        families = attributes.families_of(np.array([h.item_id for h in after])).tolist()
        assert len(set(families)) == len(families) and len(after) == 6
        first_of_family: dict[int, int] = {}
        for hit in before:
            first_of_family.setdefault(int(attributes.families_of(np.array([hit.item_id]))[0]), hit.item_id)
        assert after[0].item_id == before[0].item_id and set(first_of_family.values()) >= {h.item_id for h in after[:1]}
    varied = steered(client, item_request(queries, 6, Steering(mmr_lambda=0.3)))
    same = steered(client, item_request(queries, 6, Steering(mmr_lambda=1.0)))
    assert [[h.item_id for h in r] for r in same] == [[h.item_id for h in r] for r in plain]
    assert [[h.item_id for h in r] for r in varied] != [[h.item_id for h in r] for r in plain]
    assert all(len(r) == 6 and r[0].item_id == p[0].item_id for r, p in zip(varied, plain, strict=True))


def test_grpc_takes_the_filter_as_a_string_parameter(transformer: InProcessEncoderTransformer, tiny_catalog: Path) -> None:
    import asyncio

    from kserve import InferRequest, InferResponse
    from kserve.errors import InvalidInput
    from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelInferRequest

    gender = str(pd.read_csv(tiny_catalog / "styles.csv", dtype=str)["gender"].iloc[0])

    def request(filter_text: str) -> ModelInferRequest:
        grpc_request = ModelInferRequest(model_name=MODEL_NAME, id="grpc-filter")
        item = grpc_request.inputs.add(name="item_id", datatype="INT64", shape=[1])
        item.contents.int64_contents.extend([10000])
        grpc_request.parameters["top_k"].int64_param = 5
        grpc_request.parameters["filter"].string_param = filter_text
        grpc_request.parameters["exclude_ids"].string_param = "[10001]"
        return grpc_request

    async def answer(grpc_request: ModelInferRequest) -> InferResponse:
        return await transformer.predict(await transformer.preprocess(InferRequest.from_grpc(grpc_request)))

    response = InferResponse.from_grpc(asyncio.run(answer(request(json.dumps({"gender": gender})))).to_grpc())
    outputs = {o.name: o for o in response.outputs}
    ids = [i for i in outputs["item_id"].data if i != -1]
    assert ids and 10001 not in ids
    assert {v.decode() if isinstance(v, bytes) else v for v in outputs["gender"].data[: len(ids)]} == {gender}
    with pytest.raises(InvalidInput, match="unknown attribute"):
        asyncio.run(answer(request('{"size": "M"}')))
