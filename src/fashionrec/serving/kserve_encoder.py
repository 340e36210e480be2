"""The encoder as a plain ``kserve.Model``: the second predictor runtime, no JVM.

It serves the very same artifact as TorchServe (the package stage's ``model-store/fashionrec.mar``: encoder.safetensors +
model.json are read straight out of the archive) with the same EncoderService, over KServe's v2 REST *and* v2 gRPC,
so the transformer can use ``--predictor_protocol grpc-v2``. TorchServe is archived upstream; this is the way on.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any

from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from fashionrec.config import (
    DYNAMIC_BATCH_DELAY_MS,
    DYNAMIC_BATCH_SIZE,
    EMBEDDING_DIM,
    INPUT_IMAGE,
    MAR_FILE,
    MODEL_CARD_FILE,
    MODEL_STORE_DIR,
    OUTPUT_EMBEDDING,
    SERVED_WEIGHTS_FILE,
    predictor_model_name,
)
from fashionrec.imaging import ImageDecodeError, load_batch
from fashionrec.serving.batching import MicroBatcher
from fashionrec.serving.encoder_service import EncoderService
from fashionrec.serving.model_server import model_server_parser, run_model_server
from fashionrec.serving.responses import JsonBytesResponse
from fashionrec.serving.torchserve import mar_version
from fashionrec.serving.v2_inputs import image_payloads


def find_archives(model_dir: Path) -> list[Path]:
    """The .mar files under a KServe storage mount: the package stage's <dir>/model-store/fashionrec.mar, every
    <dir>/model-store/*.mar of a release's model store (the production and the new version), or a .mar itself."""
    if model_dir.is_file():
        return [model_dir]
    for folder in (model_dir / MODEL_STORE_DIR, model_dir):
        if archives := sorted(folder.glob("*.mar")):
            return archives
    raise FileNotFoundError(f"no .mar under {model_dir} (expected {MODEL_STORE_DIR}/{MAR_FILE})")


def load_service(archive_path: Path) -> EncoderService:
    with zipfile.ZipFile(archive_path) as archive, tempfile.TemporaryDirectory(prefix="fashionrec-enc-") as tmp:
        for name in (SERVED_WEIGHTS_FILE, MODEL_CARD_FILE):
            archive.extract(name, tmp)
        return EncoderService.load(Path(tmp))


class EncoderModel(Model):
    """One model version of the encoder, named ``predictor_model_name(its model_version)``."""

    def __init__(self, archive: Path) -> None:
        super().__init__(predictor_model_name(mar_version(archive)))
        self.archive = archive
        self.service: EncoderService | None = None
        self.batcher: MicroBatcher | None = None

    def load(self) -> bool:
        self.service = load_service(self.archive)
        self.batcher = MicroBatcher(self.service.embed, DYNAMIC_BATCH_SIZE, DYNAMIC_BATCH_DELAY_MS / 1000)
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": INPUT_IMAGE, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": OUTPUT_EMBEDDING, "datatype": "FP32", "shape": [-1, EMBEDDING_DIM]}]

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> InferResponse:
        assert self.service is not None and self.batcher is not None
        if not isinstance(payload, InferRequest) or len(payload.inputs) != 1 or payload.inputs[0].name != INPUT_IMAGE:
            raise InvalidInput(f"send exactly one input named '{INPUT_IMAGE}' (BYTES)")
        images, _ = image_payloads(payload.inputs[0])
        try:
            batch = load_batch(images, self.service.image_size)
        except ImageDecodeError as exc:
            raise InvalidInput(str(exc)) from exc
        # Shares a forward pass with concurrent requests, off the event loop (fashionrec.serving.batching).
        vectors = await self.batcher.submit(batch)
        output = InferOutput(OUTPUT_EMBEDDING, list(vectors.shape), "FP32", vectors.ravel().tolist())
        version = self.service.model_version
        return JsonBytesResponse(
            response_id=payload.id or "",
            model_name=self.name,
            model_version=version,
            # Repeated as a parameter: KServe 0.21's REST response parser drops model_version.
            parameters={"model_version": version},
            infer_outputs=[output],
        )


def main(argv: list[str] | None = None) -> None:
    """Run the encoder under kserve.ModelServer: KServe's standard arguments plus --model_dir (the storage mount).
    Every model version in the store is served under its own name; --model_name is KServe's (the InferenceService)."""
    parser = model_server_parser(__doc__)
    parser.add_argument("--model_dir", type=Path, default=Path("/mnt/models"), help="a model store (package or release)")
    args, _ = parser.parse_known_args(argv)
    run_model_server([EncoderModel(archive) for archive in find_archives(args.model_dir)], args)


if __name__ == "__main__":
    main()
