"""What the two kserve.ModelServer entrypoints (the transformer and the KServe-hosted encoder) share: KServe's own
command-line arguments plus ``--max_request_bytes``, and the start-up order (load, guard the app, serve)."""

from __future__ import annotations

import argparse
from typing import Any

from fashionrec.config import MAX_REQUEST_BYTES
from fashionrec.serving.guard import guard_app


def model_server_parser(description: str | None) -> argparse.ArgumentParser:
    from kserve import model_server

    parser = argparse.ArgumentParser(parents=[model_server.parser], description=description)
    parser.add_argument("--max_request_bytes", type=int, default=MAX_REQUEST_BYTES, help="larger bodies get a 413")
    return parser


def run_model_server(model: Any, args: argparse.Namespace, registered_models: Any = None) -> None:
    """Load ``model`` (a kserve.Model), put the request guard in front of KServe's app and serve until stopped."""
    from kserve import ModelServer, model_server

    model.load()
    guard_app(model_server.app, args.max_request_bytes)
    ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        enable_grpc=args.enable_grpc,
        enable_latency_logging=args.enable_latency_logging,
        registered_models=registered_models,
    ).start([model])
