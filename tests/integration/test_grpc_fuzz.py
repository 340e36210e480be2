"""Malformed gRPC v2 requests get INVALID_ARGUMENT with a message, never INTERNAL, from the transformer and from the
KServe-hosted encoder; both keep serving. Hypothesis generates ModelInferRequests: raw_input_contents (BYTES length
prefixes that run past the data, numeric tensors that do not fill their shape), typed contents and parameters."""

import struct
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from fashionrec.config import MODEL_NAME
from fashionrec.local.stages import StageOutputs
from fashionrec.serving.processes import LocalKServeEncoder, LocalTransformer, serve_locally

pytestmark = pytest.mark.integration
ACCEPTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}


@pytest.fixture(scope="module")
def grpc_servers(
    stages: StageOutputs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalKServeEncoder, LocalTransformer]]:
    with serve_locally(stages.deployment, tmp_path_factory.mktemp("grpc"), runtime="kserve", protocol="grpc-v2") as (
        encoder,
        transformer,
    ):
        assert isinstance(encoder, LocalKServeEncoder)
        yield encoder, transformer


def length_prefixed(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


_parameter = st.one_of(
    st.builds(lambda v: pb.InferParameter(int64_param=v), st.integers(min_value=-(2**40), max_value=2**40)),
    st.builds(lambda v: pb.InferParameter(string_param=v), st.text(max_size=12)),
    st.builds(lambda v: pb.InferParameter(bool_param=v), st.booleans()),
)
_raw = st.one_of(
    st.binary(max_size=64),  # anything, including truncated length prefixes
    st.lists(st.binary(max_size=40), max_size=4).map(length_prefixed),  # well-formed BYTES
    st.builds(lambda n, tail: struct.pack("<I", n) + tail, st.integers(min_value=0, max_value=2**32 - 1), st.binary(max_size=8)),
)


@st.composite
def infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL_NAME, id=draw(st.text(max_size=8)))
    use_raw = draw(st.booleans())
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        tensor = request.inputs.add()
        tensor.name = draw(st.sampled_from(["image", "item_id", "other"]))
        tensor.datatype = draw(st.sampled_from(["BYTES", "INT64", "FP32", "UINT8", "XYZ"]))
        tensor.shape.extend(draw(st.lists(st.integers(min_value=-2, max_value=5), max_size=3)))
        if use_raw:
            request.raw_input_contents.append(draw(_raw))
        elif tensor.datatype == "INT64":
            tensor.contents.int64_contents.extend(draw(st.lists(st.integers(min_value=-(2**62), max_value=2**62), max_size=4)))
        else:
            tensor.contents.bytes_contents.extend(draw(st.lists(st.binary(max_size=30), max_size=3)))
    if use_raw and draw(st.booleans()):
        request.raw_input_contents.append(draw(_raw))  # one more than there are inputs
    if draw(st.booleans()):
        request.parameters["top_k"].CopyFrom(draw(_parameter))
    return request


def call(server: LocalKServeEncoder | LocalTransformer, request: pb.ModelInferRequest) -> tuple[grpc.StatusCode, str]:
    """``request`` to the model ``server`` serves (the encoder answers to a name per model version)."""
    addressed = pb.ModelInferRequest()
    addressed.CopyFrom(request)
    addressed.model_name = server.served_model
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        try:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(addressed, timeout=60)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_unreadable_grpc_requests_are_invalid_argument(grpc_servers: tuple[LocalKServeEncoder, LocalTransformer]) -> None:
    prefix_past_the_end = pb.ModelInferRequest(model_name=MODEL_NAME)
    prefix_past_the_end.inputs.add(name="image", datatype="BYTES", shape=[1])
    prefix_past_the_end.raw_input_contents.append(struct.pack("<I", 1000) + b"short")  # says 1000 bytes, has 5
    more_contents_than_inputs = pb.ModelInferRequest(model_name=MODEL_NAME)  # KServe's own parser fails (IndexError)
    more_contents_than_inputs.inputs.add(name="image", datatype="BYTES", shape=[1])
    more_contents_than_inputs.raw_input_contents.extend([length_prefixed([b"x"]), b"extra"])
    for request in (prefix_past_the_end, more_contents_than_inputs):
        for server in grpc_servers:
            code, details = call(server, request)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and details, (type(server).__name__, code, details)


def test_fuzzed_grpc_requests_get_ok_or_invalid_argument_and_serving_goes_on(
    grpc_servers: tuple[LocalKServeEncoder, LocalTransformer], tiny_catalog: Path
) -> None:
    seen: list[grpc.StatusCode] = []

    @settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(request=infer_requests())
    def throw(request: pb.ModelInferRequest) -> None:
        for server in grpc_servers:
            code, details = call(server, request)
            seen.append(code)
            assert code in ACCEPTED, (type(server).__name__, code, details, request)
            assert code == grpc.StatusCode.OK or details

    throw()
    assert grpc.StatusCode.INVALID_ARGUMENT in seen
    image = (tiny_catalog / "images" / "10002.jpg").read_bytes()
    request = pb.ModelInferRequest(model_name=MODEL_NAME)
    request.inputs.add(name="image", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(length_prefixed([image]))
    for server in grpc_servers:  # still serving, correctly
        assert call(server, request)[0] == grpc.StatusCode.OK
