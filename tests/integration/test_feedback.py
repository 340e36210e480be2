"""Shoppers' feedback against the real transformer (kserve.ModelServer on loopback, behind real TorchServe): every
answer names its request and model version, simulated shoppers' events are counted per version and logged, and a
bad post gets a 4xx with its reason, never a 5xx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from prometheus_client.parser import text_string_to_metric_families

from fashionrec.config import MODEL_NAME, feedback_path
from fashionrec.engagement.events import FeedbackEvent, cloud_event
from fashionrec.engagement.shoppers import Shoppers
from fashionrec.engagement.tally import tally
from fashionrec.local.shopping import catalogue_attributes, go_shopping
from fashionrec.local.stages import StageOutputs
from fashionrec.retrieval.index import ItemIndex
from fashionrec.serving.client import image_request, infer, item_request
from fashionrec.serving.processes import LocalTransformer, serve_locally
from fashionrec.storage import read_log_lines

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(stages: StageOutputs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalTransformer, Path]]:
    root = tmp_path_factory.mktemp("feedback")
    events = root / "events.jsonl"
    with serve_locally(stages.deployment, root / "serve", event_log=events) as (_, transformer):
        yield transformer, events


def samples(transformer: LocalTransformer, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = httpx.get(f"{transformer.url}/metrics", timeout=10).text
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_every_answer_names_its_request_and_model_version(
    served: tuple[LocalTransformer, Path], stages: StageOutputs, tiny_catalog: Path
) -> None:
    transformer, _ = served
    version = ItemIndex.load(stages.index_dir).meta.model_version
    photo = (tiny_catalog / "images" / "10003.jpg").read_bytes()
    answers = [infer(transformer.url, body) for body in (item_request([10010]), item_request([10010]), image_request([photo]))]
    ids = [answer["id"] for answer in answers]
    assert all(ids) and len(set(ids)) == 3  # made up where the client sent none, one per request
    assert {answer["model_version"] for answer in answers} == {version}
    assert infer(transformer.url, {**item_request([10010]), "id": "client-chosen-1"})["id"] == "client-chosen-1"
    request = pb.ModelInferRequest(model_name=MODEL_NAME)
    tensor = request.inputs.add(name="item_id", datatype="INT64", shape=[1])
    tensor.contents.int64_contents.append(10010)
    with grpc.insecure_channel(f"127.0.0.1:{transformer.grpc_port}") as channel:
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    assert response.id and response.model_version == version


def test_shoppers_events_are_counted_per_version_and_logged(served: tuple[LocalTransformer, Path], tiny_catalog: Path) -> None:
    transformer, event_log = served
    shoppers = Shoppers(catalogue_attributes(tiny_catalog), seed=3)
    shopping = go_shopping(transformer.url, shoppers, answers=60)
    ((version, answered),) = shopping.answers.items()
    assert answered == 60
    label = (("model_version", version),)
    assert samples(transformer, "fashionrec_engagement_answers_total")[label] == 60
    clicked = samples(transformer, "fashionrec_engagement_clicked_answers_total").get(label, 0.0)
    assert 0 < clicked < 60
    by_type = samples(transformer, "fashionrec_feedback_events_total")
    assert sum(by_type.values()) == shopping.events and by_type[(("model_version", version), ("type", "impression"))] == 600
    deadline = time.monotonic() + 20  # the collector flushes every few seconds
    while len(logged := [FeedbackEvent.from_log_line(line) for line in read_log_lines(str(event_log))]) < shopping.events:
        assert time.monotonic() < deadline, f"{len(logged)} of {shopping.events} events in the event log"
        time.sleep(0.5)
    offline = tally(logged)[version]
    assert (offline.answers, offline.clicked) == (60, clicked)  # the log and the live counters agree
    assert all(event.session_id.startswith("s") and event.received > 0 for event in logged)


BAD_POSTS = {
    "json": b"{not json",
    "field": json.dumps({**cloud_event("click", "e", "r", "v", 1, 1, "session1234"), "email": "a@b.c"}).encode(),
    "value": json.dumps(cloud_event("click", "e", "r", "v", 1, 0, "session1234")).encode(),
    "batch_size": json.dumps([cloud_event("click", "e", "r", "v", 1, 1, "session1234")] * 1001).encode(),
}


def test_a_bad_post_gets_a_400_with_its_reason_and_is_counted(served: tuple[LocalTransformer, Path]) -> None:
    transformer, _ = served
    url = f"{transformer.url}{feedback_path()}"
    for reason, body in BAD_POSTS.items():
        before = samples(transformer, "fashionrec_feedback_rejected_total").get((("reason", reason),), 0.0)
        response = httpx.post(url, content=body, headers={"content-type": "application/cloudevents+json"}, timeout=30)
        assert response.status_code == 400 and response.json()["error"].startswith("feedback refused"), reason
        assert samples(transformer, "fashionrec_feedback_rejected_total")[(("reason", reason),)] == before + 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
            max_leaves=12,
        ).map(lambda doc: json.dumps(doc).encode()),
    )
)
def test_fuzzed_posts_get_only_a_2xx_or_a_4xx(served: tuple[LocalTransformer, Path], body: bytes) -> None:
    transformer, _ = served
    response = httpx.post(f"{transformer.url}{feedback_path()}", content=body, timeout=30)
    assert response.status_code in (202, 400), response.text
