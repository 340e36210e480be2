"""The model card: what later stages and serving need to know about a trained encoder, stored as model.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fashionrec.config import MODEL_CARD_FILE
from fashionrec.provenance import built_by


@dataclass
class ModelCard:
    model_version: str  # the first 12 hex digits of the sha256 of the weights file
    backbone: str
    embedding_dim: int
    image_size: tuple[int, int]
    classes: list[str]
    dataset_digest: str
    metrics: dict[str, float] = field(default_factory=dict)
    # What code made it: git commit, image (inside one) and the key packages' versions (fashionrec.provenance).
    build: dict[str, Any] = field(default_factory=built_by)

    def save(self, model_dir: Path) -> None:
        (model_dir / MODEL_CARD_FILE).write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, model_dir: Path) -> ModelCard:
        data = json.loads((model_dir / MODEL_CARD_FILE).read_text(encoding="utf-8"))
        data["image_size"] = tuple(data["image_size"])
        return cls(**data)
