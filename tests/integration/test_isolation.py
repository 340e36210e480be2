"""Nothing listens beyond loopback locally, and the repository API (hot swap, unload) answers only the admin token,
over REST and gRPC. Listening sockets are read from the kernel (/proc/net/tcp, tcp6): what the processes really bound,
not what a config file says, and without sending traffic to any other address."""

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from fashionrec.config import MODEL_NAME
from fashionrec.local.stages import StageOutputs
from fashionrec.serving.processes import LocalKServeEncoder, LocalModelServer, LocalTorchServe, LocalTransformer, serve_locally

pytestmark = pytest.mark.integration
LISTEN = "0A"


def listening() -> dict[int, set[str]]:
    """Every listening TCP port of this machine, with the addresses it is bound to."""
    found: dict[int, set[str]] = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] == LISTEN and len(address) == width:
                found.setdefault(int(port, 16), set()).add(address)
    return found


# 127.0.0.1, ::1 and ::ffff:127.0.0.1 (Java's IPv4 loopback) as the kernel writes them
LOOPBACK_FORMS = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}
ANY_FORMS = {"00000000", "00000000000000000000000000000000"}  # 0.0.0.0 and ::


def test_the_address_reader_tells_loopback_from_every_interface() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as local, socket.create_server(("0.0.0.0", 0)) as everywhere:
        ports = listening()
        assert ports[local.getsockname()[1]] == {"0100007F"}
        assert ports[everywhere.getsockname()[1]] == {"00000000"}


@pytest.fixture(scope="module")
def both_runtimes(stages: StageOutputs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[object]]:
    root = tmp_path_factory.mktemp("isolation")
    with (
        serve_locally(stages.deployment, root / "ts") as (torchserve, transformer),
        serve_locally(stages.deployment, root / "kserve", runtime="kserve", protocol="grpc-v2") as (encoder, transformer2),
    ):
        yield [torchserve, transformer, encoder, transformer2]


def ports_of(server: object) -> list[int]:
    if isinstance(server, LocalTorchServe):
        config = (server.work_dir / "config.properties").read_text()
        grpc_ports = [
            int(line.split("=")[1]) for line in config.splitlines() if line.startswith("grpc_") and line.split("=")[1].isdigit()
        ]
        return [server.inference_port, server.management_port, server.metrics_port, *grpc_ports]
    assert isinstance(server, LocalModelServer)
    return [server.http_port, server.grpc_port]


def test_every_local_server_listens_on_loopback_only(both_runtimes: list[object]) -> None:
    ports = listening()
    checked = [port for server in both_runtimes for port in ports_of(server)]
    assert len(checked) == 11  # TorchServe: 5 ports; the two transformers and the KServe encoder: 2 each
    for port in checked:
        assert port in ports, f"port {port} is not listening"
        assert ports[port] <= LOOPBACK_FORMS and not ports[port] & ANY_FORMS, (port, ports[port])


def test_the_repository_api_refuses_clients_without_the_admin_token(both_runtimes: list[object]) -> None:
    for server in both_runtimes[1:]:
        assert isinstance(server, (LocalTransformer, LocalKServeEncoder))
        for action in ("load", "unload"):
            url = f"{server.url}/v2/repository/models/{server.served_model}/{action}"
            refused = httpx.post(url, timeout=30)
            assert refused.status_code == 403 and "admin token" in refused.json()["error"]
            wrong = httpx.post(url, headers={"authorization": "Bearer not-the-token"}, timeout=30)
            assert wrong.status_code == 403
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=server.served_model), timeout=30)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert stub.ModelReady(pb.ModelReadyRequest(name=server.served_model), timeout=30).ready  # still serving
    transformer = both_runtimes[1]
    assert isinstance(transformer, LocalModelServer)
    allowed = httpx.post(
        f"{transformer.url}/v2/repository/models/{MODEL_NAME}/load", headers=transformer.admin_headers, timeout=120
    )
    assert allowed.status_code == 200  # the hot swap's own call
    with grpc.insecure_channel(f"127.0.0.1:{transformer.grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        metadata = list(transformer.admin_headers.items())
        try:
            stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=MODEL_NAME), metadata=metadata, timeout=120)
        except grpc.RpcError as exc:
            # The token lets the call through to KServe, whose gRPC RepositoryModelLoad (0.21) then fails reading the
            # extension's answer (None["name"]); the hot swap uses REST.
            assert exc.code() != grpc.StatusCode.PERMISSION_DENIED
    assert isinstance(both_runtimes[2], LocalKServeEncoder)
