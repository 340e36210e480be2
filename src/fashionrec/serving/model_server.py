"""What the two kserve.ModelServer programs (the transformer and the KServe-hosted encoder) share: KServe's own
command-line arguments plus ours, and the start-up order (load, guard the app, serve).

Ours: ``--max_request_bytes`` (larger bodies get a 413); ``--bind_address`` (KServe 0.21 always listens on every
interface: in a pod that is what the kubelet's probes need, on a laptop it must be loopback); ``--admin_token_file``
(the repository API, which hot-swaps or unloads the model, answers only requests that carry this token, over REST
and gRPC; with no file it is off, so a client of the data plane can never reach it); ``--request_trace_log``
(KServe's per-request timing lines, off by default). Over gRPC, a request KServe cannot parse gets INVALID_ARGUMENT
(KServe 0.21 answers INTERNAL).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fashionrec.config import MAX_REQUEST_BYTES
from fashionrec.serving.guard import ADMIN_HEADER, guard_app, is_admin

ADMIN_GRPC_METHODS = ("RepositoryModelLoad", "RepositoryModelUnload")
logger = logging.getLogger(__name__)


def model_server_parser(description: str | None) -> argparse.ArgumentParser:
    from kserve import model_server

    parser = argparse.ArgumentParser(parents=[model_server.parser], description=description)
    parser.add_argument("--max_request_bytes", type=int, default=MAX_REQUEST_BYTES, help="larger bodies get a 413")
    parser.add_argument("--bind_address", default="0.0.0.0", help="interface the REST and gRPC ports listen on")
    parser.add_argument(
        "--admin_token_file", type=Path, default=None, help="token that the repository (load/unload) API requires; none: off"
    )
    parser.add_argument(
        "--request_trace_log",
        type=lambda x: x.lower() in ("1", "true", "yes"),
        default=False,
        help="KServe's timing log lines per request (kserve.trace); off: the Prometheus histograms carry the same",
    )
    return parser


def read_admin_token(path: Path | None) -> str | None:
    """The admin token, or None (the repository API off) when no file is given or the Secret is not mounted."""
    if path is None or not path.is_file():
        if path is not None:
            logger.warning("admin token file %s not found: the repository API is off", path)
        return None
    token = path.read_text(encoding="utf-8").strip()
    return token or None


def guard_interceptor(token: str | None) -> Any:
    """A gRPC server interceptor, outermost: the repository RPCs need the admin token (else PERMISSION_DENIED), and a
    ModelInferRequest that KServe cannot even read (a BYTES length prefix past the end of raw_input_contents, contents
    that do not fill the shape, ...) gets INVALID_ARGUMENT with the reason instead of KServe's INTERNAL."""
    import grpc
    from kserve import InferRequest

    async def refuse(request: Any, context: Any) -> None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the repository API needs the admin token")

    def checked(handler: Any) -> Any:
        inner = handler.unary_unary

        async def infer(request: Any, context: Any) -> Any:
            try:
                InferRequest.from_grpc(request)  # what KServe's servicer does first, outside any error mapping
            except Exception as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed ModelInferRequest: {type(exc).__name__}: {exc}")
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            infer, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )

    class Guard(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any) -> Any:
            method = handler_call_details.method.rsplit("/", 1)[-1]
            if method in ADMIN_GRPC_METHODS:
                metadata = dict(handler_call_details.invocation_metadata or ())
                if not is_admin(metadata.get(ADMIN_HEADER), token):
                    return grpc.unary_unary_rpc_method_handler(refuse)
            handler = await continuation(handler_call_details)
            if method == "ModelInfer" and handler is not None and handler.unary_unary is not None:
                return checked(handler)
            return handler

    return Guard()


class _BoundGrpc:
    """grpc.aio as KServe's GRPCServer module sees it: servers listen on ``host`` instead of "[::]" (KServe 0.21 has
    no option for it) and carry our guard interceptor."""

    def __init__(self, aio: Any, host: str, interceptor: Any) -> None:
        self._aio, self._host, self._interceptor = aio, host, interceptor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._aio, name)

    def server(self, *args: Any, interceptors: tuple[Any, ...] = (), **kwargs: Any) -> Any:
        server = self._aio.server(*args, interceptors=(self._interceptor, *interceptors), **kwargs)
        add_port = server.add_insecure_port
        server.add_insecure_port = lambda address: add_port(address.replace("[::]", self._host, 1))
        return server


def run_model_server(
    models: list[Any], args: argparse.Namespace, registered_models: Any = None, add_routes: Callable[[Any], None] | None = None
) -> None:
    """Load ``models`` (kserve.Model), add our own ``add_routes`` to KServe's FastAPI app, put the request guard in front
    of it and serve until stopped."""
    import grpc
    from kserve import ModelServer, model_server
    from kserve.logging import KSERVE_TRACE_LOGGER_NAME
    from kserve.protocol.grpc import server as grpc_server

    class BoundModelServer(ModelServer):
        def setup_event_loop(self) -> None:
            # Runs after start() built the servers and before they listen.
            if self._rest_server is not None:
                self._rest_server.config.host = args.bind_address
            super().setup_event_loop()

    token = read_admin_token(args.admin_token_file)
    for model in models:
        model.load()
    if add_routes is not None:
        add_routes(model_server.app)
    guard_app(model_server.app, args.max_request_bytes, admin_token=token)
    grpc_server.aio = _BoundGrpc(grpc.aio, args.bind_address, guard_interceptor(token))
    server = BoundModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        enable_grpc=args.enable_grpc,
        enable_latency_logging=args.enable_latency_logging,
        registered_models=registered_models,
    )
    if not args.request_trace_log:
        # Three INFO lines per request (wall and CPU time, stage latencies) cost ~5% of the transformer's CPU; set
        # after the server configured KServe's logging, which would reset it.
        logging.getLogger(KSERVE_TRACE_LOGGER_NAME).setLevel(logging.WARNING)
    server.start(models)
