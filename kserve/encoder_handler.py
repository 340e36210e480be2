"""TorchServe handler of the fashionrec encoder: a thin adapter over fashionrec.serving.encoder_service.

Packed into the .mar with the fashionrec modules it needs, so the stock TorchServe image can serve it. It parses
v2 request bodies itself (run with TorchServe's service envelope off: the kservev2 envelope reads only the first
image of a BYTES input and breaks dynamic batching). Bad rows get a 400 of their own; the rest of the batch is served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ts.torch_handler.base_handler import BaseHandler

from fashionrec.serving.encoder_service import EncoderService


class EncoderHandler(BaseHandler):
    def initialize(self, context: Any) -> None:
        self.service = EncoderService.load(Path(context.system_properties["model_dir"]))
        self.context = context
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        results = self.service.handle_rows(data)
        for idx, result in enumerate(results):
            if result.status != 200:
                context.set_response_status(code=result.status, phrase=str(result.body.get("error", "")), idx=idx)  # type: ignore[union-attr]
        return [result.body for result in results]
